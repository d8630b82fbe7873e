"""Training losses on the combined model (DESIGN.md §1), one function per loss, all with the same shape:
`loss(combined, retain=None, *, beta) -> scalar Tensor`, where `combined` is the `chunked.CombinedStats` view of the
main batch (the data set for `sft`, the forget set for unlearning) and `retain` that of a retain batch.

The unlearning losses follow TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", §4 and
its reference code) and NPO (Zhang et al. 2024, "Negative Preference Optimization: From Catastrophic Collapse to
Effective Unlearning", arXiv 2404.05868, eq. 3), with the template alone as the frozen reference model. Token
losses are means over the batch's response tokens.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from crossmodel.train.combined import CombinedStats

NPO_BETA = 0.1  # Zhang et al. 2024, TOFU experiments (§5.1): beta = 0.1

Loss = Callable[..., torch.Tensor]


def _nll(combined: CombinedStats) -> torch.Tensor:
    """Mean cross-entropy of the combined model on the batch's response tokens."""
    return -combined.logprob().mean()


def _need_retain(retain: CombinedStats | None, task: str) -> CombinedStats:
    if retain is None:
        raise ValueError(f"the {task!r} loss needs a retain set; pass --retain FILE")
    return retain


def sft(combined: CombinedStats, retain: CombinedStats | None = None, *, beta: float = NPO_BETA) -> torch.Tensor:
    """Supervised fine-tuning: CE of the combined model on the response tokens."""
    return _nll(combined)


def grad_ascent(combined: CombinedStats, retain: CombinedStats | None = None, *, beta: float = NPO_BETA) -> torch.Tensor:
    """Gradient ascent on the forget set: −CE(forget)."""
    return -_nll(combined)


def grad_diff(combined: CombinedStats, retain: CombinedStats | None = None, *, beta: float = NPO_BETA) -> torch.Tensor:
    """Gradient difference: −CE(forget) + CE(retain)."""
    return -_nll(combined) + _nll(_need_retain(retain, "grad_diff"))


def kl(combined: CombinedStats, retain: CombinedStats | None = None, *, beta: float = NPO_BETA) -> torch.Tensor:
    """−CE(forget) + KL(template ‖ combined) on the retain set: the template (the model before unlearning)
    plays TOFU's oracle, so the retain distribution is pulled back to where it started."""
    return -_nll(combined) + _need_retain(retain, "kl").kl().mean()


def idk(combined: CombinedStats, retain: CombinedStats | None = None, *, beta: float = NPO_BETA) -> torch.Tensor:
    """CE toward refusal answers (`combined` is built on the forget prompts with `data.with_idk_answers`),
    plus CE(retain) when a retain set is given, as in TOFU's idk."""
    loss = _nll(combined)
    return loss if retain is None else loss + _nll(retain)


def npo(combined: CombinedStats, retain: CombinedStats | None = None, *, beta: float = NPO_BETA) -> torch.Tensor:
    """Negative Preference Optimization: −(2/β) · mean_seq log σ(−β · log(π_θ(y|x) / π_ref(y|x))), with
    log π(y|x) the sum of token log-probs of the answer and π_ref the frozen template (what the combined model is
    when the delta's logits are constant). With a retain set this is NPO+RT (+ CE(retain), Zhang et al. §5)."""
    log_ratio = combined.per_sequence(combined.logprob()) - combined.per_sequence(combined.template_logprob())
    loss = -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()
    return loss if retain is None else loss + _nll(retain)


LOSSES: dict[str, Loss] = {
    "sft": sft,
    "grad_ascent": grad_ascent,
    "grad_diff": grad_diff,
    "kl": kl,
    "idk": idk,
    "npo": npo,
}
NEEDS_RETAIN = frozenset({"grad_diff", "kl"})


def get_loss(name: str) -> Loss:
    """The loss function called `name`; a ValueError lists the known names otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(LOSSES)}") from None
