"""Paired comparisons of two models (or two steering strengths) on the same items.

Pass/fail outcomes (IFEval prompt-level): McNemar's exact test: only the discordant items count; under H0 (equal
accuracy) an item passed by exactly one model is as likely to be passed by either, so b ~ Binomial(b + c, 1/2)
(McNemar 1947; the exact form as in statsmodels' `mcnemar(exact=True)`). The accuracy difference gets the
standard error of a paired mean.

Per-token NLLs (`paired_nll_gap`): the difference of two token-weighted mean NLLs over the same items, with items
as the unit (a ratio estimator), as `crossmodel calibrate` and the replication benchmarks report it.
"""

from __future__ import annotations

import math
from typing import Sequence


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact p-value for b items passed only by A and c passed only by B (1.0 when b = c = 0)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts b={b}, c={c} must be >= 0")
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest  # lazy, as metrics.py does: scipy.stats takes a second to import

    return float(binomtest(min(b, c), b + c, 0.5).pvalue)


def paired_comparison(a: Sequence[bool], b: Sequence[bool]) -> dict[str, float]:
    """A vs B on the same items: accuracies, difference B − A with its paired standard error, McNemar's p.

    SE = sd(d) / √n with d_i = b_i − a_i ∈ {−1, 0, 1} and the sample sd (n − 1 in the denominator).
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"paired outcomes need the same items on both sides (got {len(a)} and {len(b)})")
    n = len(a)
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    diff = (only_b - only_a) / n
    var = ((only_a + only_b) - n * diff * diff) / (n - 1) if n > 1 else 0.0  # Σ(d − d̄)² / (n − 1)
    return {"n": n, "accuracy_a": sum(map(bool, a)) / n, "accuracy_b": sum(map(bool, b)) / n,
            "difference": diff, "se": math.sqrt(max(var, 0.0) / n), "only_a": only_a, "only_b": only_b,
            "p_mcnemar": mcnemar_exact(only_a, only_b)}


def paired_nll_gap(item_gaps: Sequence[float], item_tokens: Sequence[int]) -> tuple[float, float]:
    """The per-token NLL gap of two rows scored on the same items, Σ(nll_B) / Σ(tokens) − Σ(nll_A) / Σ(tokens),
    from each item's summed NLL difference g_i = nll_B,i − nll_A,i and token count c_i, and its standard error with
    items as the unit (a ratio estimator): √(n / (n − 1) · Σ (g_i − gap · c_i)²) / Σ c_i; NaN from one item."""
    if len(item_gaps) != len(item_tokens) or not item_gaps:
        raise ValueError(f"a paired NLL gap needs one token count per item (got {len(item_gaps)} gaps and "
                         f"{len(item_tokens)} counts)")
    total = sum(item_tokens)
    mean = sum(item_gaps) / total
    n = len(item_gaps)
    if n < 2:
        return mean, float("nan")
    spread = sum((g - mean * c) ** 2 for g, c in zip(item_gaps, item_tokens)) * n / (n - 1)
    return mean, spread ** 0.5 / total
