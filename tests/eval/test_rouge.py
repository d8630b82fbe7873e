"""ROUGE-L recall and the Porter stemmer, on cases worked out by hand."""

import pytest

from crossmodel.eval import lcs_length, porter_stem, rouge_l_f1, rouge_l_recall, rouge_tokens


@pytest.mark.parametrize("word, stem", [
    ("caresses", "caress"), ("ponies", "poni"), ("ties", "tie"), ("cats", "cat"), ("agreed", "agre"),
    ("plastered", "plaster"), ("motoring", "motor"), ("hopping", "hop"), ("falling", "fall"), ("filing", "file"),
    ("happy", "happi"), ("enjoy", "enjoy"), ("relational", "relat"), ("generalization", "gener"),
    ("hopeful", "hope"), ("goodness", "good"), ("adoption", "adopt"), ("geology", "geolog"),
    ("dying", "die"), ("skies", "sky"), ("died", "die"), ("spied", "spi"), ("controll", "control"),
])
def test_porter_stem_known_words(word, stem):
    assert porter_stem(word) == stem


def test_tokens_lowercase_strip_punctuation_and_stem_long_words_only():
    # "was" (3 letters) is not stemmed; "Café" loses its non-ASCII letter, as in rouge_score
    assert rouge_tokens("The cats WERE running, was Café!") == ["the", "cat", "were", "run", "was", "caf"]
    assert rouge_tokens("running cats", stem=False) == ["running", "cats"]


def test_lcs_by_hand():
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4
    assert lcs_length([], ["a"]) == 0


def test_rouge_l_recall_by_hand():
    # reference tokens: the author basil mahfouz al kuwaiti was born (8); LCS with prediction = 4
    assert rouge_l_recall("Basil Mahfouz was born", "The author Basil Mahfouz Al-Kuwaiti was born") == 0.5
    # stemming lets "writes" match "writing": both are "write"/"write" after Porter
    assert rouge_l_recall("she writes", "She is writing") == pytest.approx(2 / 3)
    assert rouge_l_recall("she writes", "She is writing", stem=False) == pytest.approx(1 / 3)


def test_rouge_edge_cases():
    assert rouge_l_recall("", "some answer") == 0.0  # empty generation
    assert rouge_l_recall("anything", "") == 0.0  # empty reference
    assert rouge_l_recall("!!!", "...") == 0.0  # no tokens on either side
    # a generation far longer than the reference still has recall 1 when it contains it in order
    assert rouge_l_recall("x " * 200 + "alpha beta gamma " + "y " * 200, "alpha beta gamma") == 1.0
    # ties between several LCS alignments give the same length
    assert rouge_l_recall("a b a b", "b a") == 1.0


def test_rouge_f1_by_hand():
    # LCS 2, precision 2/4, recall 2/2 -> F1 = 2*0.5*1/1.5
    assert rouge_l_f1("alpha beta gamma delta", "alpha gamma") == pytest.approx(2 / 3)
    assert rouge_l_f1("", "alpha") == 0.0
