"""`crossmodel map` end to end on tiny tokenizer files: artefact written, report printed, errors readable."""

import json

from typer.testing import CliRunner
from .vocab_fixtures import write_byte_level_tokenizer_json, write_sentencepiece_tokenizer_json

from crossmodel.cli import app
from crossmodel.vocab import TokenMap


def test_map_command_writes_the_artefact_and_the_reference_triple(tmp_path):
    user = write_sentencepiece_tokenizer_json(tmp_path / "sp")
    delta = write_byte_level_tokenizer_json(tmp_path / "bl")
    result = CliRunner().invoke(app, ["map", "--user", str(user), "--delta", str(delta), "--mode", "normalized",
                                      "--out", str(tmp_path / "map"), "--export-cmc", str(tmp_path / "ref" / "x"),
                                      "--user-rows", "270"])
    assert result.exit_code == 0, result.output
    assert "exact" in result.output and "unmapped examples" in result.output
    tmap = TokenMap.load(tmp_path / "map", user=user, delta=delta)
    assert tmap.user_rows == 270 and tmap.mode == "normalized"
    assert len(json.loads((tmp_path / "ref" / "x_id.json").read_text())) == 263


def test_map_command_reports_a_missing_tokenizer(tmp_path):
    result = CliRunner().invoke(app, ["map", "--user", str(tmp_path / "nope.json"), "--delta", "llama-2",
                                      "--out", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert "neither an existing path nor a known name" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def _one_error(result, *words):
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output and all(w in lines[0] for w in words), (words, lines[0])


def _map(tmp_path, user, delta, *flags):
    return CliRunner().invoke(app, ["map", "--user", str(user), "--delta", str(delta), "--out", str(tmp_path / "m"),
                                    *flags])


def test_map_refuses_rows_below_the_base_vocabulary(tmp_path):
    user = write_byte_level_tokenizer_json(tmp_path / "bl")  # 258 base tokens + 2 added ones
    delta = write_sentencepiece_tokenizer_json(tmp_path / "sp")
    _one_error(_map(tmp_path, user, delta, "--user-rows", "10"), "user_rows=10", "258 base tokens", "--user-rows")
    _one_error(_map(tmp_path, user, delta, "--delta-rows", "10"), "delta_rows=10", "--delta-rows")
    assert not (tmp_path / "m").exists()  # nothing half-written
    # a model may have fewer rows than the tokenizer has tokens when only added tokens lie beyond (Gemma-3)
    result = _map(tmp_path, user, delta, "--user-rows", "258")
    assert result.exit_code == 0, result.output
    assert TokenMap.load(tmp_path / "m").user_rows == 258


def test_map_names_a_truncated_or_foreign_tokenizer_file_and_accepts_a_bom(tmp_path):
    user = write_byte_level_tokenizer_json(tmp_path / "bl")
    delta = write_sentencepiece_tokenizer_json(tmp_path / "sp")
    text = user.read_text(encoding="utf-8")
    truncated = tmp_path / "cut" / "tokenizer.json"
    truncated.parent.mkdir()
    truncated.write_text(text[: len(text) // 2], encoding="utf-8")
    _one_error(_map(tmp_path, truncated.parent, delta), str(truncated), "not valid JSON", "line")
    _one_error(_map(tmp_path, truncated, delta), str(truncated), "not valid JSON")
    foreign = tmp_path / "config.json"
    foreign.write_text('{"model_type": "llama"}')
    _one_error(_map(tmp_path, foreign, delta), str(foreign), "no vocabulary")
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"model": {"vocab": {"é": 0}}}'.encode("latin-1"))
    _one_error(_map(tmp_path, latin1, delta), str(latin1), "not UTF-8")
    bom = tmp_path / "bom" / "tokenizer.json"
    bom.parent.mkdir()
    bom.write_text(text, encoding="utf-8-sig")
    result = _map(tmp_path, bom, delta)
    assert result.exit_code == 0, result.output
