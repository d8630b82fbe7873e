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
