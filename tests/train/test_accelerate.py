"""`crossmodel train` under `accelerate launch` with 2 CPU processes (gloo): the same per-step losses, evaluations
and final delta as one process with the same global batch and seed; one artefact, written by the main process;
a 2-process run killed after a checkpoint resumes to where the uninterrupted run ends; the template sharded with
FSDP gives the same losses. Plus the pieces of `distributed.py` that need no second process."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from crossmodel.cli import app
from crossmodel.steer import DeltaModel
from crossmodel.train.config import TEMPLATE_SHARD_NAMES, TrainConfig
from crossmodel.train.distributed import SHARDINGS, launched_processes, row_block
from crossmodel.train.facts import write_facts
from crossmodel.train.recipe import run_training

BIN = Path(sys.executable).parent
# 10 examples in micro-batches of 3 (the last one holds a single row, so one process reads nothing of it), two
# micro-batches per step, NPO with a retain set (sequence-level and token-level terms): 2 steps per epoch.
SETTINGS = {"task": "npo", "epochs": 3, "batch_size": 3, "grad_accum": 2, "delta_layers": 1, "delta_d_model": 32,
            "delta_heads": 2, "lr": 3e-3, "save_every": 2, "seed": 5, "progress": False}
KILL_SCRIPT = """
import json, os, signal, sys
from crossmodel.train.config import TrainConfig
from crossmodel.train.recipe import run_training

def on_step(step, loss):
    if step == int(sys.argv[2]):  # after the step-2 checkpoint is on disk (every process waited for it)
        os.kill(os.getpid(), signal.SIGKILL)

run_training(TrainConfig(**json.loads(sys.argv[1])), on_step=on_step, log=None)
"""


def flags(settings: dict) -> list[str]:
    """`crossmodel train` flags of TrainConfig keys."""
    out = []
    for key, value in settings.items():
        name = key.replace("_", "-")
        out += [f"--{name}" if value else f"--no-{name}"] if isinstance(value, bool) else [f"--{name}", str(value)]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(*argv: str) -> subprocess.CompletedProcess:
    """`accelerate launch` of 2 processes on this machine (torchrun; gloo on CPU), one torch thread each."""
    cmd = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()), *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


# Delta tensors of two runs that split the same batches differently (process count, FSDP) match to float32 rounding
# amplified by Adam: it divides each update by sqrt(v), so a coordinate with a tiny gradient turns a 1e-7 reduction-
# order difference into a larger relative step. Seen: ≤ 1.1e-5 on AMD and Intel machines; one record dropped or
# doubled in these runs moves the delta by 0.17 / 0.14 (measured), so 1e-4 still catches a lost or doubled row.
DELTA_GAP = 1e-4


def relative_gap(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> float:
    """The largest per-tensor ‖got − want‖ / ‖want‖."""
    assert got.keys() == want.keys()
    return max(float((got[k] - want[k]).norm() / want[k].norm().clamp_min(1e-12)) for k in want)


def history(out: Path) -> list[dict]:
    return json.loads((out / "train_log.json").read_text())["history"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tokenizer):
    """One single-process run (in this process) and one 2-process run (`accelerate launch crossmodel train`)."""
    from .conftest import make_llama

    root = tmp_path_factory.mktemp("accelerate")
    template = root / "template"
    make_llama(len(tokenizer), hidden=48, layers=2, seed=1).save_pretrained(template)
    tokenizer.save_pretrained(template)
    data = write_facts(root / "facts.json", n_authors=2, seed=3)
    retain = write_facts(root / "retain.json", n_authors=1, seed=4)
    base = {"template": str(template), "data": str(data), "retain": str(retain), **SETTINGS}
    torch.set_num_threads(1)
    run_training(TrainConfig(**base, out=str(root / "one")), log=None)
    two = launch(str(BIN / "crossmodel"), "train", *flags(base), "--out", str(root / "two"))
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    return root, base, two


def test_two_processes_give_the_one_process_run(runs, tokenizer):
    root, _, two = runs
    one_log, two_log = (json.loads((root / d / "train_log.json").read_text()) for d in ("one", "two"))
    assert one_log["world_size"] == 1 and two_log["world_size"] == 2
    assert [h["step"] for h in two_log["history"]] == list(range(1, 7))
    assert [h["tokens"] for h in two_log["history"]] == [h["tokens"] for h in one_log["history"]]
    for got, want in zip(two_log["history"], one_log["history"]):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)
    for key in ("data_nll", "retain_nll"):
        assert two_log["evals"][-1][key] == pytest.approx(one_log["evals"][-1][key], rel=1e-5)
    one_delta = load_file(root / "one" / "delta" / "model.safetensors")
    two_delta = load_file(root / "two" / "delta" / "model.safetensors")
    start = DeltaModel.create(vocabulary_of=tokenizer, layers=1, d_model=32, heads=2, seed=5).model.state_dict()
    assert relative_gap(one_delta, {k: start[k] for k in one_delta}) > 1e-3  # it trained
    assert relative_gap(two_delta, one_delta) <= DELTA_GAP
    assert "2 processes on cpu" in two.stdout and two.stdout.count("delta saved to") == 1


def test_only_the_main_process_writes_one_artefact(runs):
    root, _, _ = runs
    names = sorted(p.relative_to(root / "two").as_posix() for p in (root / "two").rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(root / "one").as_posix() for p in (root / "one").rglob("*") if p.is_file())
    assert not (root / "two" / "checkpoint").exists()
    loaded = DeltaModel.load(root / "two" / "delta")
    assert loaded.config.data["train_config"]["batch_size"] == 3 and loaded.config.metrics["steps"] == 6


def test_killed_two_process_run_resumes_to_the_uninterrupted_delta(runs):
    root, base, _ = runs
    out = root / "killed"
    script = root / "kill.py"
    script.write_text(KILL_SCRIPT)
    killed = launch(str(script), json.dumps({**base, "out": str(out)}), "3")
    assert killed.returncode != 0 and not (out / "delta").exists()
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["step"] == 2
    shutil.copytree(out, root / "killed-1p")  # the same checkpoint, resumed by one process below
    resumed = launch(str(BIN / "crossmodel"), "train", *flags(base), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "at step 2 of 6" in resumed.stdout
    assert [h["loss"] for h in history(out)] == pytest.approx([h["loss"] for h in history(root / "two")], rel=1e-5)
    want = load_file(root / "two" / "delta" / "model.safetensors")
    assert relative_gap(load_file(out / "delta" / "model.safetensors"), want) <= DELTA_GAP
    # the numbers do not depend on the process count, so one process may continue a 2-process checkpoint
    run_training(TrainConfig(**base, out=str(root / "killed-1p")), resume=True, log=None)
    assert relative_gap(load_file(root / "killed-1p" / "delta" / "model.safetensors"), want) <= DELTA_GAP


def test_fsdp_sharded_template_gives_the_same_losses(runs):
    root, base, _ = runs
    settings = {**base, "epochs": 1}
    run_training(TrainConfig(**settings, cache=False, out=str(root / "one-nocache")), log=None)
    sharded = launch(str(BIN / "crossmodel"), "train", *flags({**settings, "template_shard": "fsdp"}), "--out",
                     str(root / "fsdp"))
    assert sharded.returncode == 0, sharded.stdout[-3000:] + sharded.stderr[-3000:]
    assert "template sharded with fsdp" in sharded.stdout
    assert "template cache: off for a fsdp-sharded template" in sharded.stdout  # its forward needs every process
    assert not (root / "fsdp" / "template_cache").exists()
    want = [h["loss"] for h in history(root / "one-nocache")]
    assert [h["loss"] for h in history(root / "fsdp")] == pytest.approx(want, rel=1e-5)
    gap = relative_gap(load_file(root / "fsdp" / "delta" / "model.safetensors"),
                       load_file(root / "one-nocache" / "delta" / "model.safetensors"))
    assert gap <= DELTA_GAP


def test_row_blocks_cover_the_batch_in_order():
    for n in range(0, 8):
        for world in (1, 2, 3):
            blocks = [row_block(n, r, world) for r in range(world)]
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
            assert max(e - s for s, e in blocks) - min(e - s for s, e in blocks) <= 1


def test_one_process_without_a_launcher():
    processes = launched_processes("cpu")
    assert (processes.world_size, processes.rank, processes.is_main, processes.distributed) == (1, 0, True, False)
    assert TEMPLATE_SHARD_NAMES == SHARDINGS


def test_bad_template_shard_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="template_shard='ddp'"):
        launched_processes("cpu", "ddp")
    result = CliRunner().invoke(app, ["train", "--template", "x", "--data", "x", "--out", str(tmp_path),
                                      "--template-shard", "ddp"])
    assert result.exit_code == 1 and "template_shard='ddp'" in result.output and "fsdp" in result.output
    assert "Traceback" not in result.output


def test_accelerate_cpu_launch_of_one_process_says_how_to_get_more(tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    result = CliRunner().invoke(app, ["train", "--template", str(tmp_path / "none"), "--data", str(tmp_path / "x"),
                                      "--out", str(tmp_path / "out")])
    assert "accelerate launch --multi_gpu --num_processes N" in result.output


def test_other_processes_open_only_the_cache_built_for_their_run(tmp_path, tokenizer, template):
    from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE
    from crossmodel.train.data import Example, encode_examples
    from crossmodel.train.facts import generate_facts
    from crossmodel.train.template_cache import TemplateCache

    records = generate_facts(1, seed=1)
    encoded = encode_examples([Example([{"role": "user", "content": r["question"]}], r["answer"]) for r in records],
                              tokenizer, PLAIN_CHAT_TEMPLATE, 96)
    built = TemplateCache.build(template, encoded, tmp_path / "cache", pad_id=0)
    opened = TemplateCache.open(template, encoded, tmp_path / "cache")
    assert opened.key == built.key and torch.equal(opened.rows_for([0, 1]), built.rows_for([0, 1]))
    with pytest.raises(ValueError, match="--no-cache"):
        TemplateCache.open(template, encoded[:2], tmp_path / "cache")
    with pytest.raises(ValueError, match="--no-cache"):
        TemplateCache.open(template, encoded, tmp_path / "elsewhere")


@pytest.mark.slow
def test_bfloat16_template_losses_stay_within_the_documented_tolerance(tmp_path):
    """SmolLM2 as the template, 3 steps recomputing it every step: the per-step losses with the template in
    bfloat16 are within 1e-2 relative of float32 (docs/SCALING.md; measured ≈ 4e-3)."""
    data = write_facts(tmp_path / "facts.json", n_authors=3, seed=0)
    losses = {}
    for dtype in ("float32", "bfloat16"):
        cfg = TrainConfig(template="smollm2-135m-instruct", data=str(data), out=str(tmp_path / dtype), epochs=1,
                          limit=12, batch_size=4, dtype=dtype, cache=False, save_every=0, progress=False)
        run_training(cfg, log=None)
        losses[dtype] = [h["loss"] for h in history(tmp_path / dtype)]
    assert len(losses["float32"]) == 3 and losses["float32"] != losses["bfloat16"]
    assert losses["bfloat16"] == pytest.approx(losses["float32"], rel=1e-2)
