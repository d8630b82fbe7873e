"""`crossmodel train` end to end on a tiny template saved as an HF dir: flags or YAML → run → DeltaModel dir."""

import json

import pytest
import yaml
from typer.testing import CliRunner

from crossmodel.cli import app
from crossmodel.steer import DeltaModel
from crossmodel.train.config import TrainConfig
from crossmodel.train.recipe import run_training
from crossmodel.train.facts import write_facts


def test_cli_trains_and_saves_a_delta_artefact(tmp_path, template_dir):
    data = write_facts(tmp_path / "facts.json", n_authors=2, seed=3)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--template", str(template_dir), "--data", str(data), "--out",
                                      str(out), "--epochs", "2", "--batch-size", "5", "--delta-layers", "1",
                                      "--delta-d-model", "32", "--delta-heads", "2", "--lr", "3e-3"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    delta = DeltaModel.load(out / "delta")
    cfg = delta.config
    assert cfg.task == "sft" and cfg.chat_template and cfg.data["examples"] == 10
    assert cfg.metrics["steps"] == 4 and cfg.metrics["data_nll"] > 0
    assert cfg.architecture["layers"] == 1 and cfg.data["train_config"]["lr"] == 3e-3
    assert (out / "loss_curve.png").is_file() and "delta saved to" in result.output


def test_yaml_config_with_flag_override_and_resume(tmp_path, template_dir):
    data = write_facts(tmp_path / "facts.json", n_authors=2, seed=3)
    cfg_path = tmp_path / "run.yaml"
    keys = {"template": str(template_dir), "data": str(data), "epochs": 3, "batch_size": 5, "delta_layers": 1,
            "delta_d_model": 32, "delta_heads": 2, "save_every": 2, "progress": False}
    cfg_path.write_text(yaml.safe_dump(keys))
    runner = CliRunner()
    full = runner.invoke(app, ["train", "--config", str(cfg_path), "--epochs", "2", "--out", str(tmp_path / "full")])
    assert full.exit_code == 0, full.output + repr(full.exception)
    log = json.loads((tmp_path / "full" / "train_log.json").read_text())
    assert log["config"]["epochs"] == 2 and len(log["history"]) == 4
    assert not (tmp_path / "full" / "checkpoint").exists()  # a finished run keeps no stale resume state

    def interrupt(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    cut = TrainConfig(**{**keys, "epochs": 2, "out": str(tmp_path / "cut")})
    with pytest.raises(KeyboardInterrupt):
        run_training(cut, on_step=interrupt, log=None)
    assert not (tmp_path / "cut" / "delta").exists() and (tmp_path / "cut" / "checkpoint").is_dir()
    # resume from the step-2 checkpoint: steps 3-4 are replayed exactly
    again = runner.invoke(app, ["train", "--config", str(cfg_path), "--epochs", "2", "--out", str(tmp_path / "cut"),
                                "--resume"])
    assert again.exit_code == 0, again.output + repr(again.exception)
    assert "resumed from" in again.output and "at step 2 of 4" in again.output
    relog = json.loads((tmp_path / "cut" / "train_log.json").read_text())
    assert [h["loss"] for h in relog["history"]] == pytest.approx([h["loss"] for h in log["history"]], abs=1e-6)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ValueError, match="task='dpo'"):
        TrainConfig(task="dpo")
    with pytest.raises(ValueError, match="--retain"):
        TrainConfig(task="grad_diff")
    with pytest.raises(ValueError, match="epochs=0"):
        TrainConfig(epochs=0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rate'\]"):
        TrainConfig.from_file(bad)
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "x.json"), "--out", str(tmp_path)])
    assert result.exit_code == 1 and "--template" in result.output and "Traceback" not in result.output
