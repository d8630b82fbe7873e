"""The training loop on tiny random models: SFT moves every delta weight and never the template, grad_diff
unlearns the forget set while keeping the retain set, and a run killed with SIGKILL resumes exactly."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from crossmodel.steer import DeltaModel
from crossmodel.train.config import TrainConfig
from crossmodel.train.data import Example, encode_examples
from crossmodel.train.facts import generate_facts
from crossmodel.train.loop import CHECKPOINT_DIR, CURVE_PNG, LOG_JSON, cosine_with_warmup, evaluate, train, LossData
from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE

HERE = Path(__file__).parent


def encoded(tokenizer, records):
    exs = [Example([{"role": "user", "content": r["question"]}], r["answer"]) for r in records]
    return encode_examples(exs, tokenizer, PLAIN_CHAT_TEMPLATE, 96)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    values = [cosine_with_warmup(s, 3, 10) for s in range(11)]
    assert values[:3] == pytest.approx([1 / 3, 2 / 3, 1.0]) and values[3] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[3:], values[4:])) and values[10] == pytest.approx(0.0)


def test_sft_moves_every_delta_weight_and_never_the_template(tokenizer, template, delta, tmp_path):
    data = encoded(tokenizer, generate_facts(2, seed=1))
    before_t = {k: v.clone() for k, v in template.state_dict().items()}
    before_d = {k: v.clone() for k, v in delta.state_dict().items()}
    cfg = TrainConfig(epochs=4, batch_size=4, lr=3e-3, eval_every=3, save_every=2, progress=False)
    result = train(template, delta, data, cfg, tmp_path, pad_id=tokenizer.pad_token_id)
    assert all(torch.equal(v, template.state_dict()[k]) for k, v in before_t.items())
    assert all(not torch.equal(v, delta.state_dict()[k]) for k, v in before_d.items())
    assert result.evals[-1]["data_nll"] < result.evals[0]["data_nll"] - 0.3
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert [e["step"] for e in result.evals] == [3, 6, 9, 12]
    log = json.loads((tmp_path / LOG_JSON).read_text())
    assert log["metrics"]["data_nll"] == result.evals[-1]["data_nll"] and log["config"]["task"] == "sft"
    assert (tmp_path / CURVE_PNG).read_bytes()[:4] == b"\x89PNG"
    files = [p.name for p in tmp_path.rglob("*") if p.is_file()]
    assert "trainer_state.safetensors" in files and not [f for f in files if f.endswith((".pt", ".pkl", ".bin"))]



def test_frozen_embeddings_stay_put_and_the_layers_still_learn(tokenizer, template, delta, tmp_path):
    data = encoded(tokenizer, generate_facts(2, seed=1))
    embedding = delta.get_input_embeddings().weight.detach().clone()
    head = delta.get_output_embeddings().weight.detach().clone()
    layer = delta.model.layers[0].mlp.up_proj.weight.detach().clone()
    cfg = TrainConfig(epochs=4, batch_size=4, lr=3e-3, train_embeddings=False, save_every=0, progress=False)
    result = train(template, delta, data, cfg, tmp_path, pad_id=tokenizer.pad_token_id)
    assert torch.equal(delta.get_input_embeddings().weight, embedding)
    assert torch.equal(delta.get_output_embeddings().weight, head)
    assert not torch.equal(delta.model.layers[0].mlp.up_proj.weight, layer)
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_a_zero_start_delta_learns(tokenizer, template, tmp_path):
    data = encoded(tokenizer, generate_facts(2, seed=1))
    delta = DeltaModel.create(tokenizer, layers=1, d_model=32, heads=2, zero_start=True).model.train()
    cfg = TrainConfig(epochs=8, batch_size=4, lr=1e-2, eval_every=6, save_every=0, progress=False)  # its logits
    # grow as (norm scale) × (embedding change), both from zero: slower at first than a random start
    result = train(template, delta, data, cfg, tmp_path, pad_id=tokenizer.pad_token_id)
    assert torch.count_nonzero(delta.model.norm.weight) > 0 and torch.count_nonzero(delta.lm_head.weight) > 0
    assert result.evals[-1]["data_nll"] < result.evals[0]["data_nll"] - 0.3


def pretrain(model, tokenizer, data, steps=40):
    """Make the tiny template know its data, as a real template knows the facts it should forget or keep."""
    side = LossData("all", data, tokenizer.pad_token_id, None)
    batch = side.batch(list(range(len(data))))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)  # to NLL ~2 nats: known, not saturated
    model.train()
    for _ in range(steps):
        loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval().requires_grad_(False)


def test_grad_diff_unlearns_forget_and_keeps_retain(tokenizer, template, delta, tmp_path):
    records = generate_facts(6, seed=2)
    forget, retain = encoded(tokenizer, records[:5]), encoded(tokenizer, records[5:])
    template = pretrain(template.requires_grad_(True), tokenizer, forget + retain)
    cfg = TrainConfig(task="grad_diff", retain="(in memory)", epochs=20, batch_size=5, lr=2e-2, progress=False,
                      save_every=0, warmup_ratio=0.0)
    start = evaluate(template, delta, [LossData("data", forget, 0, None), LossData("retain", retain, 0, None)], cfg)
    result = train(template, delta, forget, cfg, tmp_path, pad_id=tokenizer.pad_token_id, retain=retain)
    end = result.evals[-1]
    assert end["data_nll"] > start["data_nll"] + 2.0  # forget answers became much less likely
    assert end["retain_nll"] <= 1.1 * start["retain_nll"]  # the retain set does not get worse


RUN_SCRIPT = """
import os, signal, sys, torch
sys.path.insert(0, {root!r})
from tests.train.conftest import make_llama, make_tokenizer
from safetensors.torch import save_file
from crossmodel.train.config import TrainConfig
from crossmodel.train.data import Example, encode_examples
from crossmodel.train.facts import generate_facts
from crossmodel.train.loop import train
from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE
torch.set_num_threads(1)
tok = make_tokenizer()
enc = lambda recs: encode_examples([Example([{{"role": "user", "content": r["question"]}}], r["answer"])
                                    for r in recs], tok, PLAIN_CHAT_TEMPLATE, 96)
records = generate_facts(3, seed=7)
template, delta = make_llama(len(tok), 48, 2, 1).requires_grad_(False), make_llama(len(tok), 32, 2, 2)
cfg = TrainConfig(task="grad_diff", retain="x", epochs=3, batch_size=2, grad_accum=2, lr=2e-3, save_every=2,
                  progress=False, seed=11)
kill_at = int(sys.argv[2])
def on_step(step, loss):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
result = train(template, delta, enc(records[:10]), cfg, sys.argv[1], pad_id=tok.pad_token_id,
               retain=enc(records[10:]), resume=sys.argv[3] == "resume", on_step=on_step)
save_file({{k: v.contiguous().clone() for k, v in delta.state_dict().items()}}, sys.argv[1] + "/final.safetensors")
"""


def run_script(tmp_path, out, kill_at, mode):
    script = tmp_path / "run.py"
    script.write_text(RUN_SCRIPT.format(root=str(HERE.parents[1])))
    return subprocess.run([sys.executable, str(script), str(out), str(kill_at), mode], capture_output=True,
                          text=True, timeout=600)


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    # 10 examples, batch 2, accumulation 2 -> 3 optimizer steps per epoch; checkpoints at steps 2, 4, 6 ...
    full = run_script(tmp_path, tmp_path / "full", -1, "fresh")
    assert full.returncode == 0, full.stderr[-2000:]
    killed = run_script(tmp_path, tmp_path / "killed", 5, "fresh")  # dies in epoch 2, after checkpoint 4
    assert killed.returncode == -signal.SIGKILL
    state = json.loads((tmp_path / "killed" / CHECKPOINT_DIR / "trainer_state.json").read_text())
    assert state["step"] == 4 and not (tmp_path / "killed" / "final.safetensors").exists()
    resumed = run_script(tmp_path, tmp_path / "killed", -1, "resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    want, got = load_file(tmp_path / "full" / "final.safetensors"), load_file(tmp_path / "killed" / "final.safetensors")
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6)
    log_full = json.loads((tmp_path / "full" / LOG_JSON).read_text())["history"]
    log_resumed = json.loads((tmp_path / "killed" / LOG_JSON).read_text())["history"]
    assert [h["step"] for h in log_resumed] == list(range(1, 10))
    assert [h["loss"] for h in log_resumed] == pytest.approx([h["loss"] for h in log_full], abs=1e-5)


def test_resume_without_checkpoint_is_an_error(tokenizer, template, delta, tmp_path):
    cfg = TrainConfig(epochs=1, progress=False)
    with pytest.raises(FileNotFoundError, match="without --resume"):
        train(template, delta, encoded(tokenizer, generate_facts(1)), cfg, tmp_path, pad_id=0, resume=True)
