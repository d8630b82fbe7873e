"""TOFU aggregate metrics against values computed by hand."""

import math

import pytest

from crossmodel.eval import metrics


def test_mean_nll_and_probability():
    assert metrics.mean_nll([-1.0, -3.0]) == 2.0
    assert metrics.answer_probability(2.0) == pytest.approx(math.exp(-2))
    with pytest.raises(ValueError, match="no tokens"):
        metrics.mean_nll([])


def test_normalized_probability_by_hand():
    e = math.exp
    assert metrics.normalized_probability(1.0, [2.0, 3.0]) == pytest.approx(e(-1) / (e(-1) + e(-2) + e(-3)))
    # ties: the correct answer is exactly as likely as each of its 3 options -> 1/4
    assert metrics.normalized_probability(2.0, [2.0, 2.0, 2.0]) == pytest.approx(0.25)
    # huge NLLs would underflow exp(); the ratio must still be right
    assert metrics.normalized_probability(1000.0, [1001.0]) == pytest.approx(1 / (1 + math.exp(-1)))


def test_truth_ratio_by_hand():
    # R = exp(NLL(paraphrase) - mean NLL(perturbed)) = exp(1 - 3)
    assert metrics.truth_ratio(1.0, [2.0, 4.0]) == pytest.approx(math.exp(-2))
    assert metrics.truth_ratio(2.0, [2.0, 2.0]) == 1.0  # tie: no preference
    with pytest.raises(ValueError, match="perturbed"):
        metrics.truth_ratio(1.0, [])


def test_truth_ratio_score_forget_and_retain():
    # forget: mean(min(R, 1/R)) = (0.5 + 0.5) / 2
    assert metrics.truth_ratio_score([0.5, 2.0], forget=True) == pytest.approx(0.5)
    # retain: mean(max(0, 1 - R)) = (0.5 + 0) / 2
    assert metrics.truth_ratio_score([0.5, 2.0], forget=False) == pytest.approx(0.25)
    assert metrics.truth_ratio_score([1.0], forget=True) == 1.0
    # an answer the model rules out entirely: R overflows to inf, the scores stay finite
    r = metrics.truth_ratio(900.0, [1.0])
    assert r == math.inf
    assert metrics.truth_ratio_score([r], forget=True) == 0.0 and metrics.truth_ratio_score([r], forget=False) == 0.0
    # and the other way: R underflows to 0 (forget form 0, retain form 1)
    r = metrics.truth_ratio(1.0, [900.0])
    assert r == 0.0
    assert metrics.truth_ratio_score([r], forget=True) == 0.0 and metrics.truth_ratio_score([r], forget=False) == 1.0


def test_harmonic_mean():
    assert metrics.harmonic_mean([1.0, 2.0, 4.0]) == pytest.approx(3 / (1 + 0.5 + 0.25))
    assert metrics.harmonic_mean([0.0, 5.0]) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        metrics.harmonic_mean([-1.0, 1.0])


def test_ks_forget_quality():
    same = metrics.ks_forget_quality([0.5, 1.0, 2.0], [0.5, 1.0, 2.0])
    assert same == {"forget_quality": 1.0, "ks_statistic": 0.0}
    apart = metrics.ks_forget_quality([0.1, 0.2, 0.3, 0.4], [5.0, 6.0, 7.0, 8.0])
    assert apart["ks_statistic"] == 1.0
    # exact two-sided p for n = m = 4 and D = 1: 2 / C(8, 4)
    assert apart["forget_quality"] == pytest.approx(2 / 70)
    # R and 1/R give the same test (what locuslab feeds); a zero ratio is fine
    ratios, ref = [0.2, 0.5, 1.5, 3.0, 0.0], [0.3, 0.9, 2.0, 4.0, 6.0]
    inverse = metrics.ks_forget_quality([1 / r for r in ratios[:-1]], [1 / r for r in ref])
    direct = metrics.ks_forget_quality(ratios[:-1], ref)
    assert direct == pytest.approx(inverse)
    assert 0 <= metrics.ks_forget_quality(ratios, ref)["forget_quality"] <= 1


@pytest.mark.parametrize("text, bad", [
    ("Quenneville Quence Qui Qui Qui Qui", True),  # the demo's collapse before issue 16
    ("September 1111111111111111111", True),
    ("", True), ("   ", True),
    ("the cat sat the cat sat the cat sat the cat sat", True),
    ("Rafael Takahara was born in Sapporo, Japan on January 26, 1964.", False),
    ("I do not know. I do not know.", False),  # a repeated short refusal is not a loop
    ("had had that", False),  # two in a row is ordinary English
    ("Born in 10000000 BC", False),
])
def test_degenerate_flags_collapses_not_answers(text, bad):
    from crossmodel.eval.metrics import degenerate, degenerate_rate

    assert degenerate(text) is bad
    assert degenerate_rate([text, "A plain answer."]) == (0.5 if bad else 0.0)
