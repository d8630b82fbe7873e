"""The three CMC combination rules (docs/STEERING.md): how template (or user) logits and delta logits become one.

    basenormalize:  z = log_softmax(z_template) + alpha * z_delta            (the paper's default)
    normalize:      z = log_softmax(z_template) + alpha * log_softmax(z_delta)
    add:            z = z_template + alpha * z_delta

Pure tensor functions; this module imports only torch. Both inputs are already in the same vocabulary
(cross-vocabulary deltas are gathered through a TokenMap first).
"""

from __future__ import annotations

from typing import Callable

import torch

Rule = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


def basenormalize(template_logits: torch.Tensor, delta_logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """log_softmax(template) + alpha * delta: the reference's default rule."""
    return torch.log_softmax(template_logits.float(), dim=-1) + alpha * delta_logits.float()


def normalize(template_logits: torch.Tensor, delta_logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """log_softmax(template) + alpha * log_softmax(delta)."""
    return torch.log_softmax(template_logits.float(), dim=-1) + alpha * torch.log_softmax(delta_logits.float(), dim=-1)


def add(template_logits: torch.Tensor, delta_logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """template + alpha * delta, on raw logits."""
    return template_logits.float() + alpha * delta_logits.float()


COMBINE_RULES: dict[str, Rule] = {
    "basenormalize": basenormalize,
    "base-normalize": basenormalize,  # the spelling used on the command line
    "normalize": normalize,
    "add": add,
}


def get_rule(name: str) -> Rule:
    """The combination function called `name`; a ValueError lists the known names otherwise."""
    try:
        return COMBINE_RULES[name]
    except KeyError:
        raise ValueError(f"unknown combination rule {name!r}; choose one of {sorted(COMBINE_RULES)}") from None


def combine(template_logits: torch.Tensor, delta_logits: torch.Tensor, rule: str = "basenormalize",
            alpha: float = 1.0) -> torch.Tensor:
    """CombinedStats logits (float32) of template and delta under `rule` with strength `alpha`; shapes must match."""
    if template_logits.shape != delta_logits.shape:
        raise ValueError(f"template logits {tuple(template_logits.shape)} and delta logits "
                         f"{tuple(delta_logits.shape)} differ in shape; map the delta into the template's "
                         "vocabulary first (`crossmodel map`)")
    return get_rule(rule)(template_logits, delta_logits, alpha)
