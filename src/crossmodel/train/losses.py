"""Training losses on the combined model (docs/TRAINING.md), one function per loss, all with the same shape:
`loss(combined, retain=None, options=LossOptions()) -> scalar Tensor`, where `combined` is the `CombinedStats` view
of the main batch (the data set for `sft`, the forget set for unlearning) and `retain` that of a retain batch.

The unlearning losses follow TOFU (Maini et al. 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", §4 and
its reference code), NPO (Zhang et al. 2024, arXiv 2404.05868, eq. 3), SimNPO (Fan et al. 2024, "Simplicity
Prevails: Rethinking Negative Preference Optimization for LLM Unlearning", arXiv 2410.07163, eq. 4) and UNDIAL
(Dong et al. 2024, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large Language Models",
arXiv 2402.10052), with the template alone as the frozen reference model. Token losses are means over the batch's
response tokens. The retain term of idk / npo / simnpo / undial is CE on the retain answers, or (retain_loss="kl")
KL(template ‖ combined) there — pulling the retain distribution back to the frozen model's, not only its answers —
weighted by `retain_weight` (1 = TOFU's sum). Every term that fits targets by CE (sft's data, idk's refusals, a CE
retain term) can add the delta's own CE on the same targets — its logits softmaxed alone, without the template —
weighted by `delta_lm_weight`: a delta that is a language model by itself orders its boosts, so a user model of
another tokenization does not repeat a boosted piece (docs/RESULTS.md, demo).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from crossmodel.train.combined import CombinedStats

NPO_BETA = 0.1  # Zhang et al. 2024, TOFU experiments (§5.1): beta = 0.1
RETAIN_LOSSES = ("ce", "kl")


@dataclass(frozen=True)
class LossOptions:
    """The loss hyperparameters (TrainConfig keys of the same names)."""

    npo_beta: float = NPO_BETA  # NPO's inverse temperature
    simnpo_beta: float = 2.5  # SimNPO's inverse temperature (Fan et al. 2024, TOFU: 2.5)
    simnpo_gamma: float = 0.0  # SimNPO's reward margin (Fan et al. 2024, TOFU: 0)
    undial_gamma: float = 10.0  # UNDIAL: how far the target token's logit is lowered in the teacher
    retain_loss: str = "ce"  # the retain term: "ce" on the retain answers, or "kl" to the frozen model
    retain_weight: float = 1.0  # weight of the retain term against the forget term (open-unlearning's alpha)
    sft_kl_weight: float = 0.0  # sft: weight of KL(template ‖ combined) on the training answers
    delta_lm_weight: float = 0.0  # weight of the delta's own CE (its logits alone) wherever a CE term fits targets

    @classmethod
    def of(cls, config: Any) -> "LossOptions":
        """The options of a TrainConfig (or any object with attributes of the same names)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


DEFAULT_OPTIONS = LossOptions()

Loss = Callable[..., torch.Tensor]


def _nll(combined: CombinedStats) -> torch.Tensor:
    """Mean cross-entropy of the combined model on the batch's response tokens."""
    return -combined.logprob().mean()


def _fit(combined: CombinedStats, options: LossOptions) -> torch.Tensor:
    """CE of the combined model on the targets, plus `delta_lm_weight` × CE of the delta alone on them."""
    loss = _nll(combined)
    if options.delta_lm_weight:
        loss = loss - options.delta_lm_weight * combined.delta_logprob().mean()
    return loss


def _retain_term(retain: CombinedStats, how: str, options: LossOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """CE of the combined model on the retain answers (+ the delta-alone term), or KL(template ‖ combined) at the
    retain positions."""
    if how not in RETAIN_LOSSES:
        raise ValueError(f"retain_loss={how!r}; choose one of {list(RETAIN_LOSSES)}")
    return _fit(retain, options) if how == "ce" else retain.kl().mean()


def _plus_retain(loss: torch.Tensor, retain: CombinedStats | None, options: LossOptions) -> torch.Tensor:
    return loss if retain is None else loss + options.retain_weight * _retain_term(retain, options.retain_loss, options)


def _need_retain(retain: CombinedStats | None, task: str) -> CombinedStats:
    if retain is None:
        raise ValueError(f"the {task!r} loss needs a retain set; pass --retain FILE")
    return retain


def sft(combined: CombinedStats, retain: CombinedStats | None = None,
        options: LossOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """Supervised fine-tuning: CE of the combined model on the response tokens (+ the delta-alone term of
    `delta_lm_weight`), + `sft_kl_weight` × KL(template ‖ combined) at the same positions, which keeps the
    combined model near the template wherever the data does not pull it away."""
    loss = _fit(combined, options)
    return loss + options.sft_kl_weight * combined.kl().mean() if options.sft_kl_weight else loss


def grad_ascent(combined: CombinedStats, retain: CombinedStats | None = None,
                options: LossOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """Gradient ascent on the forget set: −CE(forget)."""
    return -_nll(combined)


def grad_diff(combined: CombinedStats, retain: CombinedStats | None = None,
              options: LossOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """Gradient difference: −CE(forget) + w · CE(retain), w = retain_weight (+ the delta-alone term of
    `delta_lm_weight` on the retain answers)."""
    return -_nll(combined) + options.retain_weight * _fit(_need_retain(retain, "grad_diff"), options)


def kl(combined: CombinedStats, retain: CombinedStats | None = None,
       options: LossOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """−CE(forget) + KL(template ‖ combined) on the retain set: the template (the model before unlearning)
    plays TOFU's oracle, so the retain distribution is pulled back to where it started (weighted by
    retain_weight)."""
    return -_nll(combined) + options.retain_weight * _retain_term(_need_retain(retain, "kl"), "kl")


def idk(combined: CombinedStats, retain: CombinedStats | None = None,
        options: LossOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """CE toward refusal answers (`combined` is built on the forget prompts with `data.with_idk_answers`),
    plus CE(retain) when a retain set is given, as in TOFU's idk (+ the delta-alone term of `delta_lm_weight` on
    the refusals and retain answers)."""
    return _plus_retain(_fit(combined, options), retain, options)


def npo(combined: CombinedStats, retain: CombinedStats | None = None,
        options: LossOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """Negative Preference Optimization: −(2/β) · mean_seq log σ(−β · log(π_θ(y|x) / π_ref(y|x))), with
    log π(y|x) the sum of token log-probs of the answer and π_ref the frozen template (what the combined model is
    when the delta's logits are constant). With a retain set this is NPO+RT (+ CE(retain), Zhang et al. §5)."""
    beta = options.npo_beta
    log_ratio = combined.per_sequence(combined.logprob()) - combined.per_sequence(combined.template_logprob())
    return _plus_retain(-(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean(), retain, options)


def simnpo(combined: CombinedStats, retain: CombinedStats | None = None,
           options: LossOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """SimNPO: −(2/β) · mean_seq log σ(−(β/|y|) · log π_θ(y|x) − γ) — NPO without a reference model, the
    answer's log-likelihood normalised by its length (Fan et al. 2024, eq. 4); + the retain term when a retain set
    is given."""
    beta, gamma = options.simnpo_beta, options.simnpo_gamma
    length = combined.per_sequence(torch.ones_like(combined.logprob())).clamp_min(1)
    mean_logprob = combined.per_sequence(combined.logprob()) / length  # (n_seq,)
    return _plus_retain(-(2.0 / beta) * F.logsigmoid(-beta * mean_logprob - gamma).mean(), retain, options)


def undial(combined: CombinedStats, retain: CombinedStats | None = None,
           options: LossOptions = DEFAULT_OPTIONS) -> torch.Tensor:
    """UNDIAL: self-distillation toward the frozen model's own distribution with the target token's logit lowered
    by γ — CE(softmax(z_template − γ·onehot(y)), combined) per forget position, a bounded objective that cannot
    run away the way gradient ascent does (Dong et al. 2024); + the retain term when a retain set is given."""
    return _plus_retain(combined.adjusted_ce(options.undial_gamma).mean(), retain, options)


LOSSES: dict[str, Loss] = {
    "sft": sft,
    "grad_ascent": grad_ascent,
    "grad_diff": grad_diff,
    "kl": kl,
    "idk": idk,
    "npo": npo,
    "simnpo": simnpo,
    "undial": undial,
}
NEEDS_RETAIN = frozenset({"grad_diff", "kl"})


def get_loss(name: str) -> Loss:
    """The loss function called `name`; a ValueError lists the known names otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(LOSSES)}") from None
