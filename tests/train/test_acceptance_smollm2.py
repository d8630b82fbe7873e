"""Acceptance (slow, real model): `crossmodel train --template smollm2-135m-instruct --data FACTS --task sft --out D`
with the DEFAULT settings, on the 30 QA pairs of `crossmodel facts` (6 fictitious authors), gives a delta with which
the steered template reproduces them (greedy ROUGE-L recall >= 0.8), and leaves the template unchanged."""

import json
import time

import pytest
import torch
from typer.testing import CliRunner

from crossmodel.cli import app

TEMPLATE = "smollm2-135m-instruct"


@pytest.mark.slow
def test_default_sft_makes_smollm2_recite_fictitious_facts(tmp_path):
    from crossmodel.eval.metrics import rouge_l_recall
    from crossmodel.models import load_model
    from crossmodel.steer import DeltaModel, steer

    runner = CliRunner()
    assert runner.invoke(app, ["facts", "--out", str(tmp_path)]).exit_code == 0
    started = time.perf_counter()
    result = runner.invoke(app, ["train", "--template", TEMPLATE, "--data", str(tmp_path / "facts.json"), "--task",
                                 "sft", "--out", str(tmp_path / "run")])
    trained_s = time.perf_counter() - started
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (tmp_path / "facts.json").read_text().splitlines()]
    loaded = load_model(TEMPLATE)
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    delta = DeltaModel.load(tmp_path / "run" / "delta")
    outputs = steer(loaded, deltas=[(delta, 1.0, None)]).generate([r["question"] for r in records],
                                                                  max_new_tokens=48, chat=True)
    recall = sum(rouge_l_recall(o, r["answer"]) for o, r in zip(outputs, records)) / len(records)
    log = json.loads((tmp_path / "run" / "train_log.json").read_text())
    cfg, metrics = log["config"], log["metrics"]
    print(f"\nROUGE-L recall {recall:.3f} on {len(records)} pairs; {cfg['epochs']} epochs, {metrics['steps']} steps, "
          f"lr {cfg['lr']}, loss {log['history'][0]['loss']:.3f} → {metrics['final_loss']:.4f}; "
          f"train {trained_s:.0f} s, total {time.perf_counter() - started:.0f} s")
    assert recall >= 0.8
    assert log["auto"] == ["epochs", "save_every"] and not (tmp_path / "run" / "checkpoint").exists()
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in before.items())
