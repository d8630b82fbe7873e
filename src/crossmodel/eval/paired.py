"""Paired comparison of two models on the same items with a pass/fail outcome each (IFEval prompt-level).

McNemar's exact test: only the discordant items count; under H0 (equal accuracy) an item passed by exactly one
model is as likely to be passed by either, so b ~ Binomial(b + c, 1/2) (McNemar 1947; the exact form as in
statsmodels' `mcnemar(exact=True)`). The accuracy difference gets the standard error of a paired mean.
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
