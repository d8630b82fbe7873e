"""Training throughput of one process against two (`accelerate launch`, gloo on CPU) with the same global batch,
and of a float32 template against a bfloat16 one, on the SmolLM2-135M-Instruct and Gemma-3-270m templates.

Each cell runs `run_training` for a handful of optimizer steps (task sft, the generated fictitious facts, default
delta 4 x 256, batch 4, no template cache, so every step runs the template) and times the steps after the first
on the main process: tokens/s = the tokens of those steps / their wall time. Layouts: one process with one torch
thread, one process with two threads, two processes with one thread each (the same two cores). Also prints how far
the bfloat16 template's per-step losses are from the float32 ones, and two processes' from one's.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_scaling.py [--steps 5] [--templates smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from crossmodel.train.config import TrainConfig
from crossmodel.train.distributed import launched_processes
from crossmodel.train.recipe import run_training, write_fact_splits

BIN = Path(sys.executable).parent
TEMPLATES = ("smollm2-135m-instruct", "gemma-3-270m")
DTYPES = ("float32", "bfloat16")
LAYOUTS = ((1, 1), (1, 2), (2, 1))  # (processes, torch threads per process)


@dataclass(frozen=True)
class Cell:
    """One measurement: template, template dtype, processes and threads each; the losses and the throughput."""

    template: str
    dtype: str
    processes: int
    threads: int
    losses: list[float]
    tokens_per_s: float


def _worker(spec: dict) -> None:
    """Train as `spec` says (inside `accelerate launch` or alone) and, on the main process, write the timings."""
    times: list[float] = []
    cfg = TrainConfig(**spec["config"])
    processes = launched_processes(cfg.device)
    run_training(cfg, on_step=lambda step, loss: times.append(time.perf_counter()), log=None, processes=processes)
    if not processes.is_main:
        return
    history = json.loads(Path(cfg.out, "train_log.json").read_text())["history"]
    tokens = sum(h["tokens"] for h in history[1:])  # the first step warms up
    Path(spec["result"]).write_text(json.dumps({"losses": [h["loss"] for h in history],
                                                "tokens_per_s": tokens / (times[-1] - times[0])}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cell(template: str, dtype: str, processes: int, threads: int, data: Path, steps: int, work: Path) -> Cell:
    out = work / f"{template}-{dtype}-{processes}x{threads}"
    config = {"template": template, "data": str(data), "out": str(out), "task": "sft", "epochs": 1,
              "limit": 4 * steps, "batch_size": 4, "dtype": dtype, "cache": False, "save_every": 0,
              "progress": False}
    spec = work / f"{out.name}.json"
    spec.write_text(json.dumps({"config": config, "result": str(out) + ".result.json"}))
    launcher = [] if processes == 1 else [
        str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    cmd = [*launcher, *([] if launcher else [sys.executable]), __file__, "--worker", str(spec)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    result = json.loads(Path(str(out) + ".result.json").read_text())
    return Cell(template, dtype, processes, threads, result["losses"], result["tokens_per_s"])


def _gap(a: Cell, b: Cell) -> float:
    """The largest relative difference of two cells' per-step losses."""
    return max(abs(x - y) / abs(y) for x, y in zip(a.losses, b.losses))


def _tables(cells: list[Cell]) -> str:
    def find(template: str, dtype: str, processes: int, threads: int = 1) -> Cell:
        return next(c for c in cells if (c.template, c.dtype, c.processes, c.threads) == (template, dtype, processes,
                                                                                          threads))

    rows = ["| template | template dtype | processes × threads | tokens/s | vs 1 × 1 float32 |",
            "|---|---|---|---|---|"]
    for c in cells:
        rows.append(f"| {c.template} | {c.dtype} | {c.processes} × {c.threads} | {c.tokens_per_s:.0f} | "
                    f"{c.tokens_per_s / find(c.template, 'float32', 1).tokens_per_s:.2f}× |")
    rows += ["", "| template | step-1 loss fp32 → bf16 | max relative loss gap bf16 vs fp32 | 2 vs 1 process, fp32 | "
             "2 vs 1 process, bf16 |", "|---|---|---|---|---|"]
    for template in dict.fromkeys(c.template for c in cells):
        fp32, bf16 = find(template, "float32", 1), find(template, "bfloat16", 1)
        two_fp32, two_bf16 = find(template, "float32", 2), find(template, "bfloat16", 2)
        rows.append(f"| {template} | {fp32.losses[0]:.4f} → {bf16.losses[0]:.4f} | {_gap(bf16, fp32):.1e} | "
                    f"{_gap(two_fp32, fp32):.1e} | {_gap(two_bf16, bf16):.1e} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--templates", nargs="+", default=list(TEMPLATES))
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per cell (the first is not timed)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(json.loads(Path(args.worker).read_text()))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = write_fact_splits(work / "data")["facts.json"]
        cells = []
        for template in args.templates:
            for dtype in DTYPES:
                for processes, threads in LAYOUTS:
                    started = time.perf_counter()
                    cells.append(_cell(template, dtype, processes, threads, data, args.steps, work))
                    print(f"{template} {dtype} {processes} process(es) × {threads} thread(s): "
                          f"{cells[-1].tokens_per_s:.0f} tokens/s ({time.perf_counter() - started:.0f} s)", flush=True)
    print(_tables(cells))


if __name__ == "__main__":
    main()
