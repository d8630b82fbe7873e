"""QA / instruction suites on a real tiny model and on a scripted one (hand-computed summary)."""

import json
import math

import pytest

from crossmodel.eval import PlainModel
from crossmodel.eval.data import load_qa
from crossmodel.eval.qa import run_qa


def test_qa_summary_by_hand(tmp_path, scripted):
    path = tmp_path / "qa.json"
    path.write_text(json.dumps([{"instruction": "Capital of France?", "output": "Paris is the capital"},
                                {"instruction": "Say hi", "input": "politely", "output": "Hello there"}]))
    items = load_qa(path, format="alpaca")
    assert items[1].prompt == "Say hi\n\npolitely"
    model = scripted({"Capital of France?": "The capital is Paris", "Say hi\n\npolitely": ""},
                     {"Paris is the capital": [-1.0, -1.0, -1.0, -1.0], "Hello there": [-2.0, -4.0]})
    summary = run_qa(model, items, tmp_path / "out", batch_size=2)["summary"]
    assert summary["nll"] == pytest.approx((1.0 + 3.0) / 2)
    assert summary["token_nll"] == pytest.approx((4.0 + 6.0) / 6)  # token-weighted
    assert summary["perplexity"] == pytest.approx(math.exp(10 / 6))
    assert summary["probability"] == pytest.approx((math.exp(-1) + math.exp(-3)) / 2)
    # "paris is the capital" vs "the capital is paris": LCS 2 of 4 (recall), precision 2/4; empty generation -> 0
    assert summary["rouge_l_recall"] == pytest.approx(0.25)
    assert summary["rouge_l_f1"] == pytest.approx(0.25)
    nll_only = run_qa(model, items, tmp_path / "nll", generate=False)["summary"]
    assert "rouge_l_recall" not in nll_only and nll_only["nll"] == summary["nll"]


def test_qa_on_tiny_model_resumes(tmp_path, tiny, tok):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in
                            [("Who wrote Romeo and Juliet?", "William Shakespeare"), ("Capital of Italy?", "Rome")]))
    items = load_qa(path)
    first = run_qa(PlainModel(tiny, tok), items, tmp_path / "o", chat=False, max_new_tokens=5)
    assert [r["tokens"] for r in first["records"]] == [len(tok.encode(it.reference,
                                                  add_special_tokens=False)) for it in items]
    assert all(r["nll"] > 0 for r in first["records"])
    again = run_qa(None, items, tmp_path / "o", chat=False, max_new_tokens=5)  # finished: the model is not used
    assert again == first


def test_multi_turn_records_are_refused(tmp_path):
    path = tmp_path / "chat.json"
    path.write_text(json.dumps([{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                              {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}]))
    with pytest.raises(ValueError, match="single-turn"):
        load_qa(path, format="chat")
