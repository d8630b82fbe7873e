"""Pure metric functions on strings and per-token log-probabilities (no models here).

ROUGE follows the `rouge_score` package that TOFU (Maini et al., 2024; locuslab/tofu `evaluate_util.py`) calls
as `RougeScorer(["rougeL"], use_stemmer=True).score(reference, prediction).recall`; the TOFU aggregates follow
locuslab/tofu `aggregate_eval_stat.py`. Every formula is stated in docs/EVALUATION.md.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import torch

from crossmodel.eval.stem import porter_stem

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str, stem: bool = True) -> list[str]:
    """ROUGE tokens as `rouge_score` makes them: lower-case, every run of characters outside [a-z0-9] is a
    separator (so punctuation and non-ASCII letters vanish), and words longer than 3 letters are Porter-stemmed."""
    words = _NON_ALNUM.sub(" ", text.lower()).split()
    return [porter_stem(w) if stem and len(w) > 3 else w for w in words]


_REPEATED_WORD = re.compile(r"\b(\w+)(?:\W+\1\b){2,}", re.IGNORECASE)  # a word three or more times in a row
_REPEATED_CHAR = re.compile(r"(\S)\1{7,}")  # one character eight or more times in a row ("1111111111")


def degenerate_reason(text: str, max_repeated_trigrams: float = 0.5) -> str | None:
    """Why a generated answer is degenerate rather than an answer, in a few words ("is empty", "repeats the word
    'Qui'", "repeats the character '1'", "loops: 60% of its word trigrams repeat"); None for an answer. The rule:
    empty, a word three or more times in a row, a character eight or more times in a row, or more than
    `max_repeated_trigrams` of its word trigrams repeats of earlier ones."""
    if not text.strip():
        return "is empty"
    if found := _REPEATED_WORD.search(text):
        return f"repeats the word {found.group(1)!r}"
    if found := _REPEATED_CHAR.search(text):
        return f"repeats the character {found.group(1)!r}"
    words = text.lower().split()
    trigrams = [tuple(words[i:i + 3]) for i in range(len(words) - 2)]
    repeated = 1 - len(set(trigrams)) / len(trigrams) if len(trigrams) >= 4 else 0.0
    return f"loops: {repeated:.0%} of its word trigrams repeat" if repeated > max_repeated_trigrams else None


def degenerate(text: str, max_repeated_trigrams: float = 0.5) -> bool:
    """Whether a generated answer is degenerate rather than an answer (`degenerate_reason` says why): empty, a word
    three or more times in a row ("Qui Qui Qui"), a character eight or more times in a row ("1111111111"), or more
    than `max_repeated_trigrams` of its word trigrams repeats of earlier ones (a loop). Used next to ROUGE-L, so a
    collapse cannot pass for forgetting."""
    return degenerate_reason(text, max_repeated_trigrams) is not None


def degenerate_rate(texts: Sequence[str]) -> float:
    """The share of `texts` that are `degenerate`."""
    return sum(degenerate(t) for t in texts) / len(texts) if texts else 0.0


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists (O(len(a)·len(b)) time, O(len(b)) memory)."""
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_recall(prediction: str, reference: str, stem: bool = True) -> float:
    """ROUGE-L recall = LCS(prediction, reference) / len(reference) over `rouge_tokens`; 0.0 when either side
    has no tokens (as `rouge_score` returns)."""
    ref, pred = rouge_tokens(reference, stem), rouge_tokens(prediction, stem)
    if not ref or not pred:
        return 0.0
    return lcs_length(pred, ref) / len(ref)


def rouge_l_f1(prediction: str, reference: str, stem: bool = True) -> float:
    """ROUGE-L F-measure (harmonic mean of LCS precision and recall) over `rouge_tokens`; 0.0 when empty."""
    ref, pred = rouge_tokens(reference, stem), rouge_tokens(prediction, stem)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


# ---- answer likelihoods (TOFU: locuslab/tofu evaluate_util.py + aggregate_eval_stat.py) ----

def mean_nll(logprobs: Sequence[float] | torch.Tensor) -> float:
    """Length-normalised negative log-likelihood −(1/n)·Σ log p(token) of one answer (TOFU's `avg_gt_loss`).
    An answer with no tokens has none: ValueError."""
    values = torch.as_tensor(logprobs, dtype=torch.float64)
    if values.numel() == 0:
        raise ValueError("an answer with no tokens has no NLL; the answer text is empty")
    return float(-values.mean())


def answer_probability(nll: float) -> float:
    """exp(−mean NLL): the length-normalised answer probability P(a|q)^(1/|a|) (TOFU forget/retain "Prob.")."""
    return math.exp(-nll)


def normalized_probability(true_nll: float, perturbed_nlls: Sequence[float]) -> float:
    """P(a)^(1/|a|) / (P(a)^(1/|a|) + Σ_k P(ã_k)^(1/|ã_k|)): the correct answer's share among the options
    (TOFU real-authors / world-facts "Prob."). Computed in log space so tiny probabilities do not underflow."""
    if not perturbed_nlls:
        raise ValueError("normalized_probability needs at least one perturbed answer")
    logs = torch.tensor([-true_nll, *(-x for x in perturbed_nlls)], dtype=torch.float64)
    return float(torch.exp(logs[0] - torch.logsumexp(logs, 0)))


def truth_ratio(paraphrased_nll: float, perturbed_nlls: Sequence[float]) -> float:
    """R_truth = (Π_k P(ã_k)^(1/|ã_k|))^(1/K) / P(â)^(1/|â|) = exp(NLL(â) − mean_k NLL(ã_k)) (Maini et al. 2024,
    eq. 1), with â the paraphrased answer (the answer itself for real authors / world facts). R < 1: the model
    prefers the true paraphrase. locuslab stores its inverse, exp(mean NLL(ã) − NLL(â))."""
    if not perturbed_nlls:
        raise ValueError("truth_ratio needs at least one perturbed answer")
    exponent = paraphrased_nll - sum(perturbed_nlls) / len(perturbed_nlls)
    return math.inf if exponent > 700 else math.exp(exponent)  # exp overflows past ~709


def truth_ratio_score(ratios: Sequence[float], forget: bool) -> float:
    """The split's "Truth Ratio" as locuslab aggregates it: mean of min(R, 1/R) on the forget split (1 = cannot
    tell true from false), mean of max(0, 1 − R) elsewhere (higher = prefers the truth)."""
    if not ratios:
        raise ValueError("truth_ratio_score needs at least one ratio")
    values = [(min(r, 1 / r) if r > 0 else 0.0) if forget else max(0.0, 1 - r) for r in ratios]
    return sum(values) / len(values)


def harmonic_mean(values: Sequence[float]) -> float:
    """n / Σ 1/x (scipy.stats.hmean); 0.0 as soon as one value is 0. Negative values are an error."""
    if not values:
        raise ValueError("harmonic_mean of no values")
    if any(v < 0 for v in values):
        raise ValueError(f"harmonic_mean needs non-negative values, got {list(values)}")
    if any(v == 0 for v in values):
        return 0.0
    return len(values) / sum(1 / v for v in values)


def ks_forget_quality(ratios: Sequence[float], reference_ratios: Sequence[float]) -> dict[str, float]:
    """Forget quality: the p-value of the two-sample Kolmogorov–Smirnov test (scipy.stats.ks_2samp) between the
    forget-split truth ratios of the evaluated model and of a model trained on the retain set only. High p (e.g.
    > 0.05) = indistinguishable from never having seen the forget set. locuslab feeds 1/R; the KS statistic and
    p-value are the same for R, because x -> 1/x is monotone on (0, inf) (and R avoids dividing by 0)."""
    from scipy.stats import ks_2samp

    if not ratios or not reference_ratios:
        raise ValueError("forget quality needs truth ratios from both the evaluated and the reference model")
    test = ks_2samp(list(ratios), list(reference_ratios))
    return {"forget_quality": float(test.pvalue), "ks_statistic": float(test.statistic)}
