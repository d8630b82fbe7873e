"""IFEval on real models (slow tier): SmolLM2-135M-Instruct plain, and Gemma-3-270m (base) steered by a SmolLM2
delta through a cross-vocabulary map, through the CLI as a user runs it."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossmodel.cli import app

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
IFEVAL = SHARED / "ifeval" / "input_data.jsonl"
NLTK_DATA = SHARED / "nltk_data"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (IFEVAL.is_file() and NLTK_DATA.is_dir()),
                                                   reason="IFEval prompts / NLTK data (../shared/data) not present")]
METRICS = ("prompt_level_strict_acc", "prompt_level_loose_acc", "instruction_level_strict_acc",
           "instruction_level_loose_acc", "eos_stop_rate", "mean_answer_tokens", "mean_answer_words")


def _crossmodel(cwd: Path, *args: str) -> str:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        done = CliRunner().invoke(app, list(args))
    assert done.exit_code == 0, done.output
    return done.output


def test_smollm2_plain_first_ten_prompts(tmp_path):
    out = _crossmodel(tmp_path, "eval", "--model", "smollm2-135m-instruct", "--suite", "ifeval", "--data",
                      str(IFEVAL), "--limit", "10", "--nltk-data", str(NLTK_DATA), "--out", "run")
    assert "prompt_level_loose_acc" in out
    base = json.loads((tmp_path / "run" / "results.json").read_text())["variants"]["base"]
    assert base["prompts"] == 10 and all(0 <= base[m] <= 1 for m in METRICS[:5])
    records = [json.loads(line) for line in (tmp_path / "run" / "base" / "responses.jsonl").read_text().splitlines()]
    assert all(r["response"] for r in records)  # an instruct model answers every prompt
    assert all(r["tokens"] <= 256 and (r["eos_stop"] or r["tokens"] == 256) for r in records)


def test_gemma3_base_with_a_cross_vocabulary_delta(tmp_path):
    _crossmodel(tmp_path, "facts", "--out", "data")
    _crossmodel(tmp_path, "train", "--template", "smollm2-135m-instruct", "--data", "data/facts.json", "--task", "sft",
                "--out", "runs/sft", "--limit", "12", "--epochs", "1")
    _crossmodel(tmp_path, "map", "--user", "gemma-3-270m", "--delta", "runs/sft/delta", "--mode", "normalized",
                "--out", "maps/g2s")
    _crossmodel(tmp_path, "eval", "--model", "gemma-3-270m", "--delta", "runs/sft/delta", "--map", "maps/g2s",
                "--suite", "ifeval", "--data", str(IFEVAL), "--limit", "4", "--max-new-tokens", "48",
                "--nltk-data", str(NLTK_DATA), "--out", "gemma")
    variants = json.loads((tmp_path / "gemma" / "results.json").read_text())["variants"]
    assert set(variants) == {"base", "steered"}
    assert all(variants[v]["prompts"] == 4 for v in variants)
    report = (tmp_path / "gemma" / "report.md").read_text()
    assert "McNemar" in report and "| base | steered | 4 |" in report
    compared = _crossmodel(tmp_path, "report", "gemma")
    assert "| gemma:base | gemma:steered | 4 |" in compared
