"""The `crossmodel transplant` job: alignment recorded before and after in the artefact, and the command end to
end (distillation, layouts, one-line errors)."""

import json

from typer.testing import CliRunner

from crossmodel.cli import app
from crossmodel.steer import DeltaModel
from crossmodel.steer.transplant import provenance
from crossmodel.train.distill import DistillConfig
from crossmodel.train.facts import generate_facts, write_facts
from crossmodel.train.transplant_job import distill_transplant

from .conftest import pair

TEXTS = [r["question"] + "\n" + r["answer"] for r in generate_facts(3, seed=7)]


def test_distill_transplant_records_before_and_after(tokenizer, char_tok):
    source, moved, token_map = pair(tokenizer, char_tok, seed=5)
    record = distill_transplant(moved, source, token_map, TEXTS, DistillConfig(steps=2, lr=1e-3))
    stored = provenance(moved.config)["distill"]
    assert stored["agreement_before"] == record["agreement_before"] and stored["config"]["steps"] == 2
    assert moved.config.metrics["distill_agreement"] == record["agreement_after"]


def test_cli_transplant_with_distillation(tmp_path, tokenizer, char_tok):
    source = DeltaModel.create(vocabulary_of=tokenizer, layers=1, d_model=32, heads=4, seed=6)
    source.save(tmp_path / "src")
    target = DeltaModel.create(vocabulary_of=char_tok, layers=1, d_model=32, heads=4)  # any HF dir will do
    target.model.save_pretrained(tmp_path / "target")
    char_tok.save_pretrained(tmp_path / "target")
    write_facts(tmp_path / "facts.jsonl", n_authors=1, seed=0)
    runner = CliRunner()
    args = ["transplant", "--delta", str(tmp_path / "src"), "--to", str(tmp_path / "target"), "--out",
            str(tmp_path / "out")]
    result = runner.invoke(app, [*args, "--distill-steps", "2", "--distill-data", str(tmp_path / "facts.jsonl"),
                                 "--distill-target", "map"])
    assert result.exit_code == 0, result.output
    raw = json.loads((tmp_path / "out" / "crossmodel.json").read_text())
    record = raw["provenance"]
    assert record["map"]["mode"] == "one-to-many" and record["distill"]["config"]["steps"] == 2
    assert record["distill"]["config"]["target_reduce"] is None  # "map": the map's own reduce
    assert DeltaModel.load(tmp_path / "out").rows == len(char_tok)
    assert raw["architecture"]["layout"] == "factored"  # the default
    failed = runner.invoke(app, [*args, "--distill-steps", "2"])
    assert failed.exit_code == 1 and "--distill-data" in failed.output
    dense = runner.invoke(app, [*args[:-1], str(tmp_path / "dense"), "--layout", "dense"])
    assert dense.exit_code == 0, dense.output
    assert DeltaModel.load(tmp_path / "dense").config.architecture["layout"] == "dense"
    wrong = runner.invoke(app, [*args, "--layout", "sparse"])
    assert wrong.exit_code == 1 and "choose one of" in wrong.output
