"""A template with a same-vocabulary delta fixed on top, shaped like a causal LM for the training loop.

Training a second delta next to `StackedTemplate(template, first_delta)` gives a delta that composes with the
first at steer time — e.g. an unlearning delta trained against "template + knowledge delta" so that it makes a
model that knows the facts forget some of them: z = rule(rule(z_template, z_first), z_second).
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from crossmodel.steer.combine import get_rule
from crossmodel.train.combined import output_head


class _Trunk(torch.nn.Module):
    """Both trunks at once: the "hidden state" is [template hidden | delta hidden]."""

    def __init__(self, template: torch.nn.Module, delta: torch.nn.Module):
        super().__init__()
        self.template, self.delta = template, delta

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        parts = [m.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                 for m in (self.template, self.delta)]
        return SimpleNamespace(last_hidden_state=torch.cat(parts, dim=-1))  # (B, T, H_template + H_delta)


class _Head(torch.nn.Module):
    """[h_template | h_delta] → rule(z_template, z_delta, α): the combined logits, as steering computes them."""

    def __init__(self, template: torch.nn.Module, delta: torch.nn.Module, alpha: float, rule: str):
        super().__init__()
        self.split = template.config.get_text_config().hidden_size
        self.template_head, self.delta_head = output_head(template), output_head(delta)
        self.alpha, self.combine = alpha, get_rule(rule)
        self.weight = template.get_output_embeddings().weight  # its rows = the logits width

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        z_template = self.template_head(hidden[..., : self.split])  # (..., V)
        return self.combine(z_template, self.delta_head(hidden[..., self.split:]), self.alpha)  # (..., V) fp32


class StackedTemplate(torch.nn.Module):
    """`template` + `delta` (same vocabulary, combined by `rule` at strength `alpha`) as one frozen causal LM with
    what the training loop reads: `base_model(...).last_hidden_state`, `get_output_embeddings()`, `config`."""

    def __init__(self, template: torch.nn.Module, delta: torch.nn.Module, alpha: float = 1.0,
                 rule: str = "basenormalize"):
        super().__init__()
        if getattr(template.config.get_text_config(), "final_logit_softcapping", None):
            raise ValueError("StackedTemplate: a template with final-logit soft-capping would be capped twice; "
                             "pick a template without it (e.g. smollm2-135m-instruct)")
        self.trunk, self.head = _Trunk(template, delta), _Head(template, delta, alpha, rule)
        self.config = template.config  # no logit soft-capping of its own: the head applies the template's
        self.requires_grad_(False)

    @property
    def base_model(self) -> torch.nn.Module:
        return self.trunk

    def get_output_embeddings(self) -> torch.nn.Module:
        return self.head
