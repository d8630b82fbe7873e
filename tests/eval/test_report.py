"""Reports: markdown tables, real PNG files, runs side by side; and the CLI end to end on a tiny saved model."""

import json

import pytest
from typer.testing import CliRunner

from crossmodel.cli import app
from crossmodel.eval.report import compare_runs, flatten, markdown_table, render_report
from crossmodel.steer import DeltaModel

from .conftest import make_tokenizer

PNG = b"\x89PNG\r\n\x1a\n"


def _tofu_summary(shift):
    splits = {s: {"rouge_l_recall": 0.5 + shift, "probability": 0.4, "truth_ratio": 0.3, "items": 5}
              for s in ("forget", "retain", "real_authors", "world_facts")}
    return {"splits": splits, "model_utility": 0.37 + shift}


def test_flatten_and_table():
    flat = flatten(_tofu_summary(0.0))
    assert flat["forget/rouge_l_recall"] == 0.5 and flat["model_utility"] == 0.37
    table = markdown_table({"base": {"a": 1.0}, "steered": {"a": 1.5, "b": 2.0}})
    assert table.splitlines()[0] == "| metric | base | steered | Δ |"
    assert "| a | 1 | 1.5 | +0.5 |" in table and "| b | – | 2 | – |" in table


@pytest.mark.parametrize("suite", ["tofu", "qa", "shift"])
def test_render_report_writes_markdown_and_png(tmp_path, suite):
    variants = {"tofu": {"base": _tofu_summary(0.0), "steered": _tofu_summary(0.2)},
                "qa": {"base": {"nll": 2.0, "rouge_l_recall": 0.3, "rouge_l_f1": 0.2},
                       "steered": {"nll": 1.5, "rouge_l_recall": 0.4, "rouge_l_f1": 0.3}},
                "shift": {"shift": {"cosine": 0.8, "pearson": 0.7}}}[suite]
    results = {"config": {"model": "m"}, "suite": suite, "variants": variants,
               "example": {"tokens": ["a", "b"], "a": [[0.1, -0.2, 0.3], [0.0, 1.0, -1.0]],
                           "b": [[0.2, -0.1, 0.3], [0.1, 0.9, -1.2]], "pearson": [0.9, 0.8, 0.95],
                           "names": ["A", "B"]}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    report = render_report(tmp_path).read_text()
    assert report.startswith(f"# crossmodel eval: {suite}") and "| metric |" in report
    pngs = list(tmp_path.glob("*.png"))
    assert len(pngs) == 1 and pngs[0].name in report
    assert pngs[0].read_bytes()[:8] == PNG and pngs[0].stat().st_size > 5000


def test_compare_runs(tmp_path):
    for name, shift in (("r1", 0.0), ("r2", 0.1)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(
            {"config": {}, "suite": "tofu", "variants": {"base": _tofu_summary(shift)}}))
    table = compare_runs([tmp_path / "r1", tmp_path / "r2"])
    assert table.splitlines()[0] == "| metric | r1:base | r2:base |"
    assert "| model_utility | 0.37 | 0.47 |" in table
    with pytest.raises(FileNotFoundError, match="not a finished"):
        compare_runs([tmp_path / "missing"])


def test_cli_eval_resume_and_report(tmp_path, tiny, tok):
    model_dir = tmp_path / "tiny"
    tiny.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in
                            [("Who wrote Romeo and Juliet?", "William Shakespeare"), ("Capital of Italy?", "Rome")]))
    args = ["eval", "--model", str(model_dir), "--suite", "qa", "--data", str(data), "--out", str(tmp_path / "o"),
            "--no-chat", "--max-new-tokens", "4"]
    runner = CliRunner()
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "| nll |" in first.output and (tmp_path / "o" / "qa.png").read_bytes()[:8] == PNG
    part = tmp_path / "o" / "base" / "qa.json"
    stamp = part.stat().st_mtime_ns
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and part.stat().st_mtime_ns == stamp  # finished part was not recomputed
    changed = runner.invoke(app, args[:-1] + ["8"])
    assert changed.exit_code == 1 and "different configuration" in changed.output
    report = runner.invoke(app, ["report", str(tmp_path / "o")])
    assert report.exit_code == 0 and "o:base" in report.output
    bad = runner.invoke(app, ["eval", "--model", str(model_dir), "--suite", "bogus", "--data", str(data),
                              "--out", str(tmp_path / "x")])
    assert bad.exit_code == 1 and "choose one of" in bad.output


def test_cli_eval_failed_start_leaves_nothing_and_names_changed_keys(tmp_path, tiny, tok):
    """A start that fails (a delta in another vocabulary without --map) writes no run.json, so the corrected command
    runs in the same --out; a really changed configuration is refused naming only the changed key, old -> new."""
    model_dir = tmp_path / "tiny"
    tiny.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    other = make_tokenizer(vocab_size=280)
    delta = DeltaModel.create(vocabulary_of=other, layers=1, d_model=32, heads=2)
    delta.save(tmp_path / "delta")
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "Capital of Italy?", "answer": "Rome"}) + "\n")
    out = tmp_path / "o"
    args = ["eval", "--model", str(model_dir), "--suite", "nll", "--data", str(data), "--out", str(out), "--no-chat"]
    runner = CliRunner()
    failed = runner.invoke(app, args + ["--delta", str(tmp_path / "delta")])
    assert failed.exit_code == 1 and "crossmodel map" in failed.output and "--mode normalized" in failed.output
    assert not (out / "run.json").exists()
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert "1 nll items" in ok.output and "--limit" in ok.output  # what it is about to do, and how to try less
    changed = runner.invoke(app, args + ["--batch-size", "2"])
    assert changed.exit_code == 1
    assert "batch_size: 4 -> 2" in changed.output and "data" not in changed.output.split("configuration")[1]
