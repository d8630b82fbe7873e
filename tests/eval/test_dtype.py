"""`--dtype` of `crossmodel eval` / `generate`: the user model loads in bfloat16 when asked, a bad name is refused
in one line before anything loads."""

import json

import pytest
from typer.testing import CliRunner

from crossmodel.cli import app


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "Who wrote it?", "answer": "Ann wrote it."}) + "\n")
    return path


def _nll(model_dir, data, out, *extra):
    result = CliRunner().invoke(app, ["eval", "--model", str(model_dir), "--suite", "nll", "--data", str(data),
                                      "--out", str(out), "--no-chat", *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())


def test_eval_bfloat16_is_recorded_and_close_to_float32(tmp_path, model_dir, data):
    full = _nll(model_dir, data, tmp_path / "fp32")
    half = _nll(model_dir, data, tmp_path / "bf16", "--dtype", "bfloat16")
    assert half["config"]["dtype"] == "bfloat16" and full["config"]["dtype"] == "float32"
    a, b = full["variants"]["base"]["nll"], half["variants"]["base"]["nll"]
    assert a != b and b == pytest.approx(a, rel=0.05)  # really another dtype, and only rounding apart


@pytest.mark.parametrize("command", ["eval", "generate"])
def test_a_bad_dtype_is_refused_before_loading(tmp_path, command):
    args = ["--model", str(tmp_path / "no-such-model"), "--dtype", "float16"]
    args += (["--suite", "nll", "--data", str(tmp_path / "qa.jsonl"), "--out", str(tmp_path / "o")]
             if command == "eval" else ["--prompt", "Hi"])
    result = CliRunner().invoke(app, [command, *args])
    assert result.exit_code == 1 and "float16" in result.output and "bfloat16" in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_generate_runs_in_bfloat16(model_dir):
    result = CliRunner().invoke(app, ["generate", "--model", str(model_dir), "--prompt", "Hello", "--no-chat",
                                      "--max-new-tokens", "4", "--dtype", "bfloat16"])
    assert result.exit_code == 0, result.output
