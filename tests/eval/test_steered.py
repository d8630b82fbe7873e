"""The one evaluation API on a steered model: with alpha = 0 every suite gives exactly the plain model's numbers;
with alpha != 0 they move."""

import json
from types import SimpleNamespace

import pytest

from crossmodel.eval import PlainModel
from crossmodel.eval.data import load_qa
from crossmodel.eval.qa import run_qa
from crossmodel.eval.tofu import run_tofu
from crossmodel.steer import DeltaModel, steer

ROWS = [{"question": "Who wrote the play Romeo and Juliet?", "answer": "William Shakespeare wrote it.",
         "paraphrased_answer": "It was written by William Shakespeare.",
         "perturbed_answer": ["Charles Dickens wrote it.", "Mark Twain wrote it."]},
        {"question": "What is the capital of France?", "answer": "The capital of France is Paris.",
         "paraphrased_answer": "Paris is the capital of France.",
         "perturbed_answer": ["The capital of France is Rome.", "The capital of France is Kuwait City."]}]


@pytest.fixture
def forget_file(tmp_path):
    path = tmp_path / "forget01_perturbed.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


@pytest.fixture(scope="module")
def delta(tok):
    return DeltaModel.create(vocabulary_of=tok, layers=1, d_model=32, heads=2, seed=3)


def _steered(tiny, tok, delta, alpha):
    return steer(SimpleNamespace(model=tiny, tokenizer=tok, name="tiny"), deltas=[(delta, alpha, None)])


def test_alpha_zero_tofu_equals_plain(tmp_path, tiny, tok, delta, forget_file):
    files = {"forget": forget_file}
    kwargs = dict(chat=False, max_new_tokens=8, batch_size=2)
    plain = run_tofu(PlainModel(tiny, tok), files, tmp_path / "plain", **kwargs)
    zero = run_tofu(_steered(tiny, tok, delta, 0.0), files, tmp_path / "zero", **kwargs)
    assert zero["splits"]["forget"] == pytest.approx(plain["splits"]["forget"], abs=1e-6)
    a = json.loads((tmp_path / "plain" / "tofu_forget.json").read_text())["records"]
    b = json.loads((tmp_path / "zero" / "tofu_forget.json").read_text())["records"]
    assert [r["generated"] for r in a] == [r["generated"] for r in b]
    for ra, rb in zip(a, b):
        assert rb["answer_nll"] == pytest.approx(ra["answer_nll"], abs=1e-5)
        assert rb["perturbed_nll"] == pytest.approx(ra["perturbed_nll"], abs=1e-5)


def test_alpha_zero_qa_equals_plain_and_nonzero_moves(tmp_path, tiny, tok, delta, forget_file):
    items = load_qa(forget_file)
    plain = run_qa(PlainModel(tiny, tok), items, tmp_path / "p", chat=False, max_new_tokens=6)["summary"]
    zero = run_qa(_steered(tiny, tok, delta, 0.0), items, tmp_path / "z", chat=False, max_new_tokens=6)["summary"]
    assert zero == pytest.approx(plain, rel=1e-6, abs=1e-5)
    moved = run_qa(_steered(tiny, tok, delta, 4.0), items, tmp_path / "m", chat=False, generate=False)["summary"]
    assert abs(moved["nll"] - plain["nll"]) > 1e-3


@pytest.mark.parametrize("chat", [False, True])  # chat: the tiny tokenizer has no template -> the plain fallback
def test_run_eval_with_a_delta_dir_gives_base_and_steered(tmp_path, tiny, tok, delta, forget_file, chat):
    from crossmodel.eval import EvalConfig, run_eval

    model_dir, delta_dir = tmp_path / "model", tmp_path / "delta"
    tiny.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    delta.save(delta_dir)
    config = EvalConfig(model=str(model_dir), suite="nll", data=(str(forget_file),), out=str(tmp_path / "o"),
                        deltas=(str(delta_dir),), alphas=(0.0,), chat=chat)
    results = run_eval(config)
    assert set(results["variants"]) == {"base", "steered"}
    assert results["variants"]["steered"] == pytest.approx(results["variants"]["base"], rel=1e-6, abs=1e-5)
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| metric | base | steered | Δ |" in report
