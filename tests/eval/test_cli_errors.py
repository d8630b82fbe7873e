"""`crossmodel eval` reports a bad data file in one line naming it (and the line), and writes no results."""

import json

import pytest
from typer.testing import CliRunner

from crossmodel.cli import app


@pytest.mark.parametrize("content, words", [
    (b'{"question": "Who?", "answer": "Ann."}\n{"question": \n', ["data.jsonl:2", "not valid JSON"]),
    (b'{"question": "Qui est Zo\xe9?", "answer": "Zo\xe9."}\n', ["data.jsonl is not UTF-8"]),
    (b"", ["data.jsonl holds no records"]),
])
def test_eval_names_a_bad_data_file(tmp_path, model_dir, content, words):
    data = tmp_path / "data.jsonl"
    data.write_bytes(content)
    result = CliRunner().invoke(app, ["eval", "--model", str(model_dir), "--suite", "nll", "--data", str(data),
                                      "--out", str(tmp_path / "out"), "--no-chat"])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.output, result.output
    assert all(word in errors[0] for word in words), errors[0]
    assert not (tmp_path / "out" / "results.json").exists()


def test_eval_reads_a_data_file_with_a_bom(tmp_path, model_dir):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"question": "Who?", "answer": "Ann."}) + "\n", encoding="utf-8-sig")
    result = CliRunner().invoke(app, ["eval", "--model", str(model_dir), "--suite", "nll", "--data", str(data),
                                      "--out", str(tmp_path / "out"), "--no-chat"])
    assert result.exit_code == 0, result.output


def test_eval_refuses_a_bad_alpha_before_loading_anything(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--model", str(tmp_path / "no-such-model"), "--suite", "nll", "--data",
                                      str(tmp_path / "qa.jsonl"), "--out", str(tmp_path / "o"), "--delta",
                                      str(tmp_path / "d"), "--alpha", "nan"])
    assert result.exit_code == 1 and "--alpha=nan" in result.output  # not "model path not found"
    assert not (tmp_path / "o").exists()
