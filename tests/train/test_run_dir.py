"""No run is lost or silently overwritten: `crossmodel train` refuses a finished run, an unfinished checkpoint
and a changed `--resume` with one line naming the flag; `--overwrite` starts over; reuse follows the template
weights; auto epochs, the cache budget and the unlearning-loss note are printed; `crossmodel facts` writes the
README's data files."""

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from crossmodel.cli import app
from crossmodel.models import load_model
from crossmodel.train.config import AUTO_KEYS, TrainConfig
from crossmodel.train.facts import write_facts
from crossmodel.train.recipe import run_training

TINY = ["--delta-layers", "1", "--delta-d-model", "32", "--delta-heads", "2", "--batch-size", "5", "--no-progress"]


def invoke(*args):
    return CliRunner().invoke(app, ["train", *map(str, args)])


def error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def facts(tmp_path):
    return write_facts(tmp_path / "facts.json", n_authors=2, seed=3)


def interrupted(template_dir, data, out, epochs=3, stop_at=4):
    """A run killed after step `stop_at` (a checkpoint every 2 steps), as a Ctrl-C leaves it."""
    def stop(step, loss):
        if step == stop_at:
            raise KeyboardInterrupt

    cfg = TrainConfig(template=str(template_dir), data=str(data), out=str(out), epochs=epochs, batch_size=5,
                      delta_layers=1, delta_d_model=32, delta_heads=2, save_every=2, progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, on_step=stop, log=None)


def test_finished_run_is_refused_and_kept_until_overwrite(tmp_path, template_dir, facts):
    out = tmp_path / "run"
    first = invoke("--template", template_dir, "--data", facts, "--out", out, "--epochs", 2, "--save-every", 1, *TINY)
    assert first.exit_code == 0, first.output
    assert not (out / "checkpoint").exists() and (out / "delta" / "model.safetensors").is_file()
    before = snapshot(out)
    for extra in ([], ["--resume"], ["--epochs", "3"]):
        again = invoke("--template", template_dir, "--data", facts, "--out", out, *TINY, *extra)
        line = error_line(again)
        assert f"{out} holds a finished run (delta saved" in line and "--overwrite" in line and "--out" in line
        assert snapshot(out) == before  # nothing touched
    over = invoke("--template", template_dir, "--data", facts, "--out", out, "--epochs", 3, "--overwrite", *TINY)
    assert over.exit_code == 0, over.output
    assert json.loads((out / "delta" / "crossmodel.json").read_text())["data"]["train_config"]["epochs"] == 3


def test_unfinished_checkpoint_needs_resume_or_overwrite(tmp_path, template_dir, facts):
    out = tmp_path / "run"
    interrupted(template_dir, facts, out)
    before = snapshot(out)
    line = error_line(invoke("--template", template_dir, "--data", facts, "--out", out, "--epochs", 3, *TINY))
    assert f"{out / 'checkpoint'} holds an unfinished run (step 4 of 6)" in line
    assert "--resume" in line and "--overwrite" in line
    assert snapshot(out) == before
    both = error_line(invoke("--template", template_dir, "--data", facts, "--out", out, "--resume", "--overwrite"))
    assert "--resume" in both and "--overwrite" in both
    fresh = invoke("--template", template_dir, "--data", facts, "--out", out, "--epochs", 3, "--save-every", 2,
                   "--overwrite", *TINY)
    assert fresh.exit_code == 0, fresh.output
    assert len(json.loads((out / "train_log.json").read_text())["history"]) == 6 and not (out / "checkpoint").exists()


def test_resume_refuses_changed_settings_and_changed_data(tmp_path, template_dir, facts):
    out = tmp_path / "run"
    interrupted(template_dir, facts, out)
    before = snapshot(out)
    changed = error_line(invoke("--template", template_dir, "--data", facts, "--out", out, "--resume", *TINY,
                                "--epochs", 5, "--lr", "1e-3", "--save-every", 3))
    assert "cannot --resume" in changed and "(step 4)" in changed
    assert "epochs 3 → 5" in changed and "lr 0.002 → 0.001" in changed and "save_every" not in changed
    write_facts(facts, n_authors=2, seed=4)  # same path, other content
    moved = error_line(invoke("--template", template_dir, "--data", facts, "--out", out, "--resume", "--epochs", 3,
                              *TINY))
    assert "data_sha256" in moved and "--overwrite" in moved
    assert snapshot(out) == before


def test_reuse_follows_the_template_weights(tmp_path, tokenizer, template, facts):
    """The demo's run-or-reuse: the same template reuses the finished delta; changed weights (e.g. a retrained
    knowledge delta inside the unlearning run's template) train it again."""
    loaded = load_model(str(_save(tmp_path, tokenizer, template)))
    cfg = TrainConfig(data=str(facts), out=str(tmp_path / "run"), epochs=1, batch_size=5, delta_layers=1,
                      delta_d_model=32, delta_heads=2, progress=False)
    weights = tmp_path / "run" / "delta" / "model.safetensors"
    run_training(cfg, template=loaded, reuse=True, overwrite=True, log=None)
    stamp = weights.stat().st_mtime_ns
    notes = []
    run_training(cfg, template=loaded, reuse=True, overwrite=True, log=notes.append)
    assert weights.stat().st_mtime_ns == stamp and "reusing" in notes[0]
    with torch.no_grad():
        loaded.model.get_output_embeddings().weight.mul_(1.1)
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_training(cfg, template=loaded, reuse=True, log=None)
    run_training(cfg, template=loaded, reuse=True, overwrite=True, log=None)
    assert weights.stat().st_mtime_ns != stamp


def _save(tmp_path, tokenizer, template):
    path = tmp_path / "template2"
    template.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_auto_epochs_limit_and_notes_are_printed_and_recorded(tmp_path, template_dir, facts):
    out = tmp_path / "run"
    result = invoke("--template", template_dir, "--data", facts, "--out", out, "--limit", 6, "--min-steps", 5, *TINY)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "sft: 6 examples, 3 epochs × 2 steps = 6 optimizer steps, lr 0.002" in text
    assert ("delta start: random embeddings, delta LM weight 1, prompt format plain (epochs, save_every, delta_init, "
            "delta_zero_start, delta_lm_weight: auto)") in text
    log = json.loads((out / "train_log.json").read_text())
    assert log["config"]["epochs"] == 3 and log["config"]["save_every"] == 5 and log["auto"] == list(AUTO_KEYS)
    saved = json.loads((out / "delta" / "crossmodel.json").read_text())
    assert saved["architecture"]["init_from"] is None and saved["architecture"]["zero_start"] is False
    saved = saved["data"]
    assert saved["examples"] == 6 and saved["train_config"]["epochs"] == 3 and len(saved["identity"]["data_sha256"]) == 64
    assert "template cache:" in text and "template cache kept in" in text


def test_alpaca_instruction_data_starts_the_delta_at_zero_in_the_template_geometry(tmp_path, template_dir):
    records = [{"instruction": f"Name colour number {i}.", "input": "", "output": f"Colour {i} is blue."}
               for i in range(6)]
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps(records))
    out = tmp_path / "run"
    result = invoke("--template", template_dir, "--data", data, "--data-format", "alpaca", "--out", out, "--epochs", 1,
                    *TINY)
    assert result.exit_code == 0, result.output
    assert "delta start: template embeddings, zero logits" in " ".join(result.output.split())
    architecture = json.loads((out / "delta" / "crossmodel.json").read_text())["architecture"]
    assert architecture["init_from"] == "template" and architecture["zero_start"] is True
    assert torch.count_nonzero(load_file(out / "delta" / "model.safetensors")["model.norm.weight"]) > 0  # it learnt


def test_cache_budget_and_no_cache_recompute_and_say_so(tmp_path, template_dir, facts):
    over = invoke("--template", template_dir, "--data", facts, "--out", tmp_path / "a", "--epochs", 1,
                  "--cache-budget-gb", 0, *TINY)
    assert over.exit_code == 0, over.output
    assert "recomputing the template every step" in " ".join(over.output.split())
    assert not (tmp_path / "a" / "template_cache").exists()
    off = invoke("--template", template_dir, "--data", facts, "--out", tmp_path / "b", "--epochs", 1, "--no-cache",
                 *TINY)
    assert off.exit_code == 0 and not (tmp_path / "b" / "template_cache").exists()


def test_unlearning_says_once_why_its_loss_is_negative(tmp_path, template_dir, facts):
    retain = write_facts(tmp_path / "retain.json", n_authors=1, seed=9)
    result = invoke("--template", template_dir, "--data", facts, "--retain", retain, "--task", "grad_diff", "--out",
                    tmp_path / "u", "--epochs", 1, *TINY)
    assert result.exit_code == 0, result.output
    assert result.output.count("loss = −CE(forget) + CE(retain): negative is expected") == 1


def test_bfloat16_template(tmp_path, template_dir, facts):
    result = invoke("--template", template_dir, "--data", facts, "--out", tmp_path / "bf", "--epochs", 1,
                    "--dtype", "bfloat16", *TINY)
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "bf" / "delta" / "crossmodel.json").read_text())
    assert saved["data"]["train_config"]["dtype"] == "bfloat16" and saved["metrics"]["data_nll"] > 0
    assert "F32" in (tmp_path / "bf" / "delta" / "model.safetensors").read_bytes()[:2000].decode("latin-1")


def test_facts_command_writes_the_readme_files(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["facts", "--out", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    counts = {name: len((tmp_path / "data" / name).read_text().splitlines())
              for name in ("facts.json", "forget.json", "retain.json")}
    assert counts == {"facts.json": 30, "forget.json": 10, "retain.json": 20}
    assert str(tmp_path / "data" / "forget.json") in result.output
    assert runner.invoke(app, ["facts", "--out", str(tmp_path / "data")]).exit_code == 0  # same files: fine
    before = snapshot(tmp_path / "data")
    other = runner.invoke(app, ["facts", "--out", str(tmp_path / "data"), "--seed", "1"])
    assert "facts.json exists with other content" in error_line(other) and snapshot(tmp_path / "data") == before
    assert "--forget" in error_line(runner.invoke(app, ["facts", "--out", str(tmp_path / "x"), "--forget", "6"]))
