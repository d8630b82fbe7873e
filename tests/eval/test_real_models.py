"""Real-model checks (slow tier): the TOFU suite end to end on SmolLM2-135M-Instruct with a rendered report, and
a steered model at alpha = 0 evaluating exactly like the plain one through the real chat template."""

import json
from pathlib import Path

import pytest

TOFU = Path(__file__).resolve().parents[3] / "shared" / "data" / "tofu"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from crossmodel.models import load_model

    return load_model("smollm2-135m-instruct")


@pytest.mark.skipif(not TOFU.is_dir(), reason="TOFU data (../shared/data/tofu) not present")
def test_tofu_end_to_end_on_smollm2(tmp_path):
    from crossmodel.eval.runner import EvalConfig, run_eval

    config = EvalConfig(model="smollm2-135m-instruct", suite="tofu", data=(str(TOFU),), out=str(tmp_path / "run"),
                        forget="forget01", limit=2, max_new_tokens=48, batch_size=2)
    results = run_eval(config)
    base = results["variants"]["base"]
    assert set(base["splits"]) == {"forget", "retain", "real_authors", "world_facts"}
    assert 0 < base["model_utility"] < 1
    for split in base["splits"].values():
        assert 0 <= split["rouge_l_recall"] <= 1 and 0 < split["probability"] < 1
    png = tmp_path / "run" / "tofu_splits.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    records = json.loads((tmp_path / "run" / "base" / "tofu_real_authors.json").read_text())["records"]
    assert all(r["generated"] for r in records)  # an instruct model answers something


def test_steered_alpha_zero_equals_plain_with_chat_template(smollm2, tmp_path):
    from crossmodel.eval import PlainModel
    from crossmodel.eval.data import QAItem
    from crossmodel.eval.qa import run_qa
    from crossmodel.steer import DeltaModel, steer

    items = [QAItem("What is the capital of France?", "The capital of France is Paris."),
             QAItem("Who wrote Romeo and Juliet?", "William Shakespeare wrote it.")]
    delta = DeltaModel.create(vocabulary_of=smollm2, layers=1, d_model=64, heads=2, seed=0)
    plain = run_qa(PlainModel(smollm2.model, smollm2.tokenizer), items, tmp_path / "p", max_new_tokens=16)
    zero = run_qa(steer(smollm2, deltas=[(delta, 0.0, None)]), items, tmp_path / "z", max_new_tokens=16)
    assert [r["generated"] for r in zero["records"]] == [r["generated"] for r in plain["records"]]
    assert zero["summary"] == pytest.approx(plain["summary"], rel=1e-5, abs=1e-5)
