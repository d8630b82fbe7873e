"""Logit-shift similarity: hand-computed vectors, position alignment, vocab mapping, and real tiny models."""

import math
from types import SimpleNamespace

import pytest
import torch

from .conftest import make_tokenizer
from crossmodel.eval.logit_shift import (ShiftPair, _aligned, compare_shifts, likely_tokens, model_logprobs,
                                          similarity)


def test_similarity_by_hand():
    s = similarity(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 0.5, 0.0]), k=1)
    assert s["cosine"] == pytest.approx(1 / math.sqrt(1.25))
    # centred: a = [2/3, -1/3, -1/3], b = [1/2, 0, -1/2] -> dot 1/2, norms sqrt(2/3) and sqrt(1/2)
    assert s["pearson"] == pytest.approx(0.5 / math.sqrt(2 / 3 * 0.5))
    assert s["topk_overlap"] == 1.0
    assert similarity(torch.tensor([1.0, 2.0]), torch.tensor([-1.0, -2.0]), k=1)["cosine"] == pytest.approx(-1.0)
    # over tokens 0 and 2 only: a = [1, 0], b = [1, 0] -> perfectly correlated although the full vectors are not
    likely = similarity(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 0.5, 0.0]), k=1, likely=torch.tensor([0, 2]))
    assert likely["pearson_likely"] == pytest.approx(1.0) and likely["pearson"] < 0.9


def test_likely_tokens_are_the_union_of_both_top_k():
    after_a, after_b = torch.tensor([0.1, 0.9, 0.5, 0.0]), torch.tensor([0.9, 0.8, 0.0, 0.1])
    assert likely_tokens(after_a, after_b, k=2).tolist() == [0, 1, 2]


def test_alignment_keeps_positions_that_read_the_same_text():
    # A read "abc|de|fghi" (ends 3, 5, 9), B read "a|b|c|fghi"-style ends 1, 2, 3, 9; BOS ends at 0 in both
    assert _aligned([0, 3, 5, 9], [0, 1, 2, 3, 9]) == [(0, 0), (1, 3), (3, 4)]


def _scripted_pair(name, tokenizer, shift_of):
    """A pair whose before-scores are zeros and whose shift at position t is shift_of(t)."""
    def before(ids):
        return torch.zeros(ids.shape[1], shift_of(0).numel())

    def after(ids):
        return torch.stack([shift_of(t) for t in range(ids.shape[1])])

    return ShiftPair(name, tokenizer, before, after)


def test_opposite_shifts_and_permuted_vocabulary(tok):
    v = len(tok)
    g = torch.Generator().manual_seed(0)
    table = torch.randn(64, v, generator=g)
    a = _scripted_pair("a", tok, lambda t: table[t])
    b = _scripted_pair("b", tok, lambda t: -table[t])
    out = compare_shifts(a, b, ["The capital of France is Paris."], progress=False)
    assert out["summary"]["cosine"] == pytest.approx(-1.0)
    assert out["summary"]["pearson"] == pytest.approx(-1.0) and out["summary"]["pearson_likely"] == pytest.approx(-1.0)
    # B's vocabulary is A's reversed: through the map the shifts are identical again
    perm = torch.arange(v - 1, -1, -1)
    b_perm = _scripted_pair("b", tok, lambda t: table[t][perm])
    out = compare_shifts(a, b_perm, ["The capital of France is Paris."], token_map=SimpleNamespace(ids=perm),
                         progress=False)
    assert out["summary"]["cosine"] == pytest.approx(1.0) and out["summary"]["topk_overlap"] == 1.0
    with pytest.raises(ValueError, match="token map"):
        compare_shifts(a, _scripted_pair("c", tok, lambda t: table[t][:-1]), ["x"], progress=False)


def test_real_tiny_models(tok, model_factory):
    before, after = model_factory(tok, seed=0), model_factory(tok, seed=1)
    pair = ShiftPair("tiny", tok, model_logprobs(before), model_logprobs(after))
    texts = ["Who wrote the play Romeo and Juliet?", "The capital of Italy is Rome."]
    same = compare_shifts(pair, pair, texts, k=5, progress=False)
    assert same["summary"]["cosine"] == pytest.approx(1.0) and same["summary"]["topk_overlap"] == 1.0
    assert same["summary"]["positions"] == sum(len(tok(t)["input_ids"]) for t in texts)
    assert same["summary"]["control"]["cosine"] < 0.99  # the control really compares different positions
    ex = same["example"]
    assert len(ex["tokens"]) == 12 and len(ex["a"]) == 12 and ex["a"] == ex["b"]
    assert same["summary"]["pearson_likely"] == pytest.approx(1.0)
    assert ex["pearson"] == pytest.approx([1.0] * len(ex["pearson"]))


def test_shift_suite_end_to_end(tmp_path, tok, model_factory):
    import json

    from crossmodel.eval import EvalConfig, run_eval

    dirs = {}
    for name, seed in (("before", 0), ("after", 1)):
        dirs[name] = tmp_path / name
        model_factory(tok, seed=seed).save_pretrained(dirs[name])
        tok.save_pretrained(dirs[name])
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "Who wrote Romeo and Juliet?", "answer": "William Shakespeare"}) + "\n")
    config = EvalConfig(model=str(dirs["before"]), after=str(dirs["after"]), model_b=str(dirs["before"]),
                        after_b=str(dirs["after"]), suite="shift", data=(str(data),), out=str(tmp_path / "o"))
    summary = run_eval(config)["variants"]["shift"]
    assert summary["cosine"] == pytest.approx(1.0) and summary["texts"] == 1
    assert (tmp_path / "o" / "shift_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="--model-b"):
        EvalConfig(model="m", suite="shift", data=("x",), out="o")


def test_steered_scores_match_plain_at_alpha_zero_and_move_otherwise(tok, tiny):
    from crossmodel.eval.logit_shift import steered_logprobs
    from crossmodel.steer import DeltaModel, steer

    delta = DeltaModel.create(vocabulary_of=tok, layers=1, d_model=32, heads=2, seed=5)
    user = type("Loaded", (), {"model": tiny, "tokenizer": tok})()
    ids = torch.tensor([tok("The capital of Italy is Rome.")["input_ids"]])
    plain = model_logprobs(tiny)(ids)
    torch.testing.assert_close(steered_logprobs(steer(user, deltas=[(delta, 0.0, None)]))(ids), plain)
    with torch.no_grad():
        z_delta = delta.model(input_ids=ids).logits[0]
    # basenormalize: log_softmax(log_softmax(z_user) + alpha * z_delta)
    want = (plain + 2.0 * z_delta).log_softmax(-1)
    got = steered_logprobs(steer(user, deltas=[(delta, 2.0, None)]))(ids)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    other = DeltaModel.create(vocabulary_of=make_tokenizer(vocab_size=280), layers=1, d_model=32, heads=2)
    with pytest.raises(ValueError, match="crossmodel map"):  # steer()'s fingerprint check, not a silent mismatch
        steer(user, deltas=[(other, 1.0, None)])
