"""Bad training data gets one error naming the file (and line) through the library and `crossmodel train`."""

import json

import pytest
from typer.testing import CliRunner

from crossmodel.cli import app
from crossmodel.train.data import load_examples

RECORD = {"question": "Who is Ann?", "answer": "Ann is a painter."}


def test_a_bom_is_accepted_and_latin1_is_named(tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_text(json.dumps(RECORD) + "\n" + json.dumps(RECORD) + "\n", encoding="utf-8-sig")
    assert [ex.response for ex in load_examples(bom)] == [RECORD["answer"]] * 2
    array = tmp_path / "bom.json"
    array.write_text(json.dumps([RECORD]), encoding="utf-8-sig")
    assert len(load_examples(array)) == 1
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(json.dumps({"question": "Qui est Zoé?", "answer": "Zoé."}, ensure_ascii=False)
                       .encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1\.jsonl is not UTF-8 .*line 1"):
        load_examples(latin1)


@pytest.mark.parametrize("content, words", [
    (json.dumps(RECORD) + '\n{"question": "x", "answer": \n', ["bad.jsonl:2", "not valid JSON"]),
    ("", ["bad.jsonl holds no records"]),
    ("\n\n", ["bad.jsonl holds no records"]),
    (json.dumps({"prompt": "x"}) + "\n", ["bad.jsonl:1", "'question'"]),
    (b"{\"question\": \"caf\xe9\", \"answer\": \"x\"}\n", ["bad.jsonl is not UTF-8"]),
])
def test_train_reports_bad_data_in_one_line(tmp_path, template_dir, content, words):
    data = tmp_path / "bad.jsonl"
    data.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    result = CliRunner().invoke(app, ["train", "--template", str(template_dir), "--data", str(data),
                                      "--out", str(tmp_path / "run")])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.output, result.output
    assert all(word in errors[0] for word in words), errors[0]
    assert not (tmp_path / "run" / "delta").exists()


def test_limit_reads_only_the_records_it_uses_and_array_errors_name_the_element(tmp_path):
    """A flaw after the first N records does not stop `--limit N` (Alpaca's own file has empty outputs at 2335
    and 4658); without the limit the error names the array element, not 'line 1' of a one-line array."""
    good = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([good, good, {"instruction": "Say nothing.", "input": "", "output": ""}]))
    assert len(load_examples(path, "alpaca", limit=2)) == 2
    with pytest.raises(ValueError, match=r"alpaca\.json: element 2 \(line 1\).*'output'"):
        load_examples(path, "alpaca")
