"""The combined model's per-token statistics, computed in chunks over positions so that full fp32
[batch, length, vocab] logits are never materialised (z = rule(z_template, z_delta, α), docs/TRAINING.md).

The delta's hidden states are computed once for the batch; then, for each chunk of loss positions, the delta's
output head, the template's log-probabilities, the combination and the log-softmax run inside an activation
checkpoint, so only one chunk's [chunk, vocab] tensors are alive at a time, in the forward and in the backward.
`CombinedStats` is what every loss in `losses.py` receives.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint

from crossmodel.steer.combine import get_rule
from crossmodel.train.templates import IGNORE_INDEX

RowsFn = Callable[[int, int], torch.Tensor]  # (start, end) -> template log-probs (end - start, V), no grad


def output_head(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """hidden → logits exactly as `model`'s own forward computes them from its last hidden state: its output
    embedding, then the final-logit soft-capping of models that declare one (Gemma 2/3). Pinned against
    `model(...).logits` by tests/train/test_combined.py."""
    head = model.get_output_embeddings()
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)

    def logits(hidden: torch.Tensor) -> torch.Tensor:
        z = head(hidden)
        return z if cap is None else torch.tanh(z / cap) * cap

    return logits


def hidden_states(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The last hidden state (after the final norm) of a causal LM: its trunk without the output head."""
    return model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def loss_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(rows, cols, targets) of every position whose next token carries loss, in row-major order.

    The logits at position t predict token t+1, so targets are the labels shifted left by one.
    """
    nxt = labels[:, 1:]  # (B, T-1)
    rows, cols = (nxt != IGNORE_INDEX).nonzero(as_tuple=True)  # (N,), (N,)
    return rows, cols, nxt[rows, cols]


class CombinedStats:
    """Lazy per-position statistics of the combined model on N loss positions of one batch.

    `logprob()` (log p_combined of each target), `delta_logprob()` (log p of the delta alone), `kl()`
    (KL(template ‖ combined) at each position) and `template_logprob()` (log p_template of each target, the NPO
    reference) are each computed in one chunked pass on first use; `seq` says which sequence of the batch a
    position belongs to.
    """

    def __init__(self, delta_hidden: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor],
                 template_rows: RowsFn, targets: torch.Tensor, seq: torch.Tensor, n_seq: int, *,
                 rule: str = "basenormalize", alpha: float = 1.0, chunk_size: int = 256,
                 use_checkpoint: bool = True):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.delta_hidden, self.head, self.template_rows = delta_hidden, head, template_rows  # (N, H)
        self.targets, self.seq, self.n_seq = targets, seq, n_seq  # (N,), (N,)
        self.rule, self.alpha, self.chunk_size = get_rule(rule), alpha, chunk_size
        self.use_checkpoint = use_checkpoint and delta_hidden.requires_grad
        self._memo: dict[str, torch.Tensor] = {}

    @property
    def n(self) -> int:
        return int(self.targets.numel())

    def _combined_logprobs(self, start: int, end: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            template = self.template_rows(start, end).float()  # (c, V), log-probs
        z = self.rule(template, self.head(h), self.alpha)  # (c, V)
        return torch.log_softmax(z, dim=-1), template

    def _target_logprob(self, start: int, end: int, h: torch.Tensor) -> torch.Tensor:
        logp, _ = self._combined_logprobs(start, end, h)
        return logp.gather(-1, self.targets[start:end, None]).squeeze(-1)  # (c,)

    def _delta_logprob(self, start: int, end: int, h: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(self.head(h).float(), dim=-1)  # (c, V): the delta alone, its own softmax
        return logp.gather(-1, self.targets[start:end, None]).squeeze(-1)  # (c,)

    def _kl(self, start: int, end: int, h: torch.Tensor) -> torch.Tensor:
        logp, template = self._combined_logprobs(start, end, h)
        return (template.exp() * (template - logp)).sum(-1)  # (c,)

    def _adjusted_ce(self, gamma: float, start: int, end: int, h: torch.Tensor) -> torch.Tensor:
        logp, template = self._combined_logprobs(start, end, h)
        lowered = template.scatter_add(-1, self.targets[start:end, None],
                                       template.new_full((end - start, 1), -gamma))  # (c, V)
        teacher = torch.softmax(lowered, dim=-1)  # the frozen model with the target token pushed down
        return -(teacher * logp).sum(-1)  # (c,)

    def _chunked(self, fn: Callable[[int, int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        parts = []
        for start in range(0, self.n, self.chunk_size):
            end = min(start + self.chunk_size, self.n)
            h = self.delta_hidden[start:end]
            if self.use_checkpoint:  # keep only the chunk's inputs; rebuild its [c, V] tensors in backward
                parts.append(checkpoint(fn, start, end, h, use_reentrant=False))
            else:
                parts.append(fn(start, end, h))
        return torch.cat(parts) if parts else self.delta_hidden.new_zeros(0)

    def logprob(self) -> torch.Tensor:
        """log p_combined(target) at every loss position, (N,)."""
        if "logprob" not in self._memo:
            self._memo["logprob"] = self._chunked(self._target_logprob)
        return self._memo["logprob"]

    def delta_logprob(self) -> torch.Tensor:
        """log p_delta(target) of the delta alone (softmax of its own logits, no template) at every loss position,
        (N,)."""
        if "delta" not in self._memo:
            self._memo["delta"] = self._chunked(self._delta_logprob)
        return self._memo["delta"]

    def kl(self) -> torch.Tensor:
        """KL(template ‖ combined) at every loss position, (N,)."""
        if "kl" not in self._memo:
            self._memo["kl"] = self._chunked(self._kl)
        return self._memo["kl"]

    def adjusted_ce(self, gamma: float) -> torch.Tensor:
        """CE(softmax(log p_template − γ·onehot(target)), combined) at every loss position, (N,): UNDIAL's
        objective."""
        key = f"adjusted_ce:{gamma}"
        if key not in self._memo:
            self._memo[key] = self._chunked(functools.partial(self._adjusted_ce, gamma))
        return self._memo[key]

    def template_logprob(self) -> torch.Tensor:
        """log p_template(target) at every loss position, (N,), without gradient."""
        if "template" not in self._memo:
            with torch.no_grad():
                parts = [self.template_rows(s, min(s + self.chunk_size, self.n)).float()
                         .gather(-1, self.targets[s:s + self.chunk_size, None]).squeeze(-1)
                         for s in range(0, self.n, self.chunk_size)]
            self._memo["template"] = torch.cat(parts) if parts else self.targets.new_zeros(0, dtype=torch.float)
        return self._memo["template"]

    def per_sequence(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of per-position `values` over each sequence of the batch, (n_seq,)."""
        return values.new_zeros(self.n_seq).index_add(0, self.seq, values)


def live_template_rows(template: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       rows: torch.Tensor, cols: torch.Tensor) -> RowsFn:
    """Template log-prob rows at the selected positions, computed from its hidden states chunk by chunk."""
    head = output_head(template)
    with torch.no_grad():
        selected = hidden_states(template, input_ids, attention_mask)[rows, cols]  # (N, H_template)

    def fn(start: int, end: int) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(head(selected[start:end]).float(), dim=-1)  # (c, V)

    return fn


def combined_for_batch(delta: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       labels: torch.Tensor, template_rows: RowsFn | None = None,
                       template: torch.nn.Module | None = None, **options) -> CombinedStats:
    """The `CombinedStats` view of one batch: delta trunk once, then chunked head/combine/log-softmax.

    Template rows come from `template_rows` (e.g. a TemplateCache) or, if None, from `template` directly.
    `options` go to `CombinedStats` (rule, alpha, chunk_size, use_checkpoint).
    """
    rows, cols, targets = loss_positions(labels)
    if template_rows is None:
        if template is None:
            raise ValueError("pass either template_rows (a cache) or the template model")
        template_rows = live_template_rows(template, input_ids, attention_mask, rows, cols)
    delta_hidden = hidden_states(delta, input_ids, attention_mask)[rows, cols]  # (N, H_delta)
    return CombinedStats(delta_hidden, output_head(delta), template_rows, targets, rows, labels.shape[0], **options)
