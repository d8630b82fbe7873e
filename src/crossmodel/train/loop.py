"""The training loop of a delta next to a frozen template (docs/TRAINING.md), written out like torchtune's recipes:
batch → template log-probs (no grad, cached) → delta → combine → loss → step → log → save.

Everything the loop does is a function of (seed, step): the data order of an epoch comes from a generator seeded
with (seed, epoch), so a run resumed from a checkpoint at step k replays exactly the batches an uninterrupted
run would have seen after step k. Under `accelerate launch` each process reads its block of rows of every
micro-batch and the losses see the whole micro-batch's statistics (`distributed.py`), so the numbers do not depend
on the process count either; only the main process writes.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from crossmodel.io import atomic_write_bytes, atomic_write_json
from crossmodel.steer.factored import logits_rows
from crossmodel.train.checkpoint import check_resumable, load_checkpoint, read_state, save_checkpoint
from crossmodel.train.combined import CombinedStats, combined_for_batch, hidden_states
from crossmodel.train.config import AUTO_KEYS, TrainConfig
from crossmodel.train.data import Batch, Encoded, collate
from crossmodel.train.distributed import SINGLE, GatheredStats, NoRows, Processes, place_template
from crossmodel.train.losses import LossOptions, get_loss
from crossmodel.train.template_cache import TemplateCache, estimate_bytes

CHECKPOINT_DIR = "checkpoint"
CACHE_DIR = "template_cache"
CURVE_PNG = "loss_curve.png"
LOG_JSON = "train_log.json"
GIB = 2 ** 30
# The unlearning losses minimise −CE(forget): their loss is meant to go below zero.
LOSS_NOTES = {"grad_ascent": "loss = −CE(forget): negative is expected",
              "grad_diff": "loss = −CE(forget) + CE(retain): negative is expected",
              "kl": "loss = −CE(forget) + KL(template‖combined) on retain: negative is expected"}
Log = Callable[[str], None]


@dataclass
class TrainResult:
    """What a run produced: per-step losses, evaluations, and the final metrics."""

    history: list[dict] = field(default_factory=list)  # {"step", "loss", "lr", "tokens"}
    evals: list[dict] = field(default_factory=list)  # {"step", "<set>_nll", ...}
    metrics: dict = field(default_factory=dict)


def cosine_with_warmup(step: int, warmup: int, total: int) -> float:
    """LR multiplier: linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The shuffled example indices of every micro-batch of `epoch`, a pure function of (seed, epoch)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


class LossData:
    """One data set in the loop (training/forget or retain): examples, and its template cache if any."""

    def __init__(self, name: str, encoded: list[Encoded], pad_id: int, cache: TemplateCache | None):
        self.name, self.encoded, self.pad_id, self.cache = name, encoded, pad_id, cache

    def batch(self, index: list[int]) -> Batch:
        return collate([self.encoded[i] for i in index], index, self.pad_id)

    def combined(self, template, delta, batch: Batch, cfg: TrainConfig, grad: bool = True,
                 processes: Processes = SINGLE) -> CombinedStats | GatheredStats:
        """The combined model's statistics on `batch`; on several processes, each computes its block of rows and
        the result is the whole batch's view (`GatheredStats`)."""
        if not processes.distributed:
            return self._local(template, delta, batch, cfg, grad)
        start, end = processes.rows(len(batch.index))
        if start < end:
            local = self._local(template, delta, Batch(batch.input_ids[start:end], batch.attention_mask[start:end],
                                                       batch.labels[start:end], batch.index[start:end]), cfg, grad)
        else:
            local = NoRows(cfg.device)
            if processes.sharded_template and self.cache is None:  # a sharded forward needs every process
                with torch.no_grad():
                    hidden_states(template, batch.input_ids[:1].to(cfg.device),
                                  batch.attention_mask[:1].to(cfg.device))
        return GatheredStats(local, batch.labels, processes)

    def _local(self, template, delta, batch: Batch, cfg: TrainConfig, grad: bool) -> CombinedStats:
        rows = None
        if self.cache is not None:
            cached = self.cache.rows_for(batch.index)  # (N, V) in the cache dtype
            rows = lambda s, e: cached[s:e]  # noqa: E731
        return combined_for_batch(delta, batch.input_ids.to(cfg.device), batch.attention_mask.to(cfg.device),
                                  batch.labels.to(cfg.device), rows, template, rule=cfg.rule, alpha=cfg.alpha,
                                  chunk_size=cfg.chunk_size, use_checkpoint=grad)


def size_text(n_bytes: float) -> str:
    """`n_bytes` as MiB or GiB, for messages."""
    return f"{n_bytes / GIB:.1f} GiB" if n_bytes >= GIB else f"{n_bytes / 2 ** 20:.1f} MiB"


def _use_cache(template, sets: list[list[Encoded]], cfg: TrainConfig, out: Path, log: Log,
               processes: Processes) -> bool:
    """Whether to cache the template's rows: asked for, the estimated size within `cfg.cache_budget_gb`, and the
    template not sharded (building the cache on one process would need every process in the template's forward)."""
    if not cfg.cache:
        return False
    if processes.sharded_template:
        log(f"template cache: off for a {processes.template_shard}-sharded template (recomputed every step)")
        return False
    rows = logits_rows(template)
    size = sum(estimate_bytes(s, rows, cfg.cache_dtype) for s in sets)
    if size > cfg.cache_budget_gb * GIB:
        log(f"template cache would take {size_text(size)} (> cache_budget_gb {cfg.cache_budget_gb:g}): "
            "recomputing the template every step instead (raise --cache-budget-gb to cache)")
        return False
    log(f"template cache: {size_text(size)} in {out / CACHE_DIR} ({cfg.cache_dtype}; --no-cache to recompute)")
    return True


def _sides(template, data: list[Encoded], retain: list[Encoded] | None, cfg: TrainConfig, out: Path,
           pad_id: int, log: Log, processes: Processes = SINGLE) -> tuple[LossData, LossData | None]:
    cached = _use_cache(template, [data, retain or []], cfg, out, log, processes)

    def side(name, encoded):
        cache = None
        if cached:  # built once, by the main process; the others open it once it is there
            with processes.main_first():
                if processes.is_main:
                    cache = TemplateCache.build(template, encoded, out / CACHE_DIR / name, pad_id=pad_id,
                                                batch_size=cfg.batch_size, dtype=cfg.cache_dtype)
                else:
                    cache = TemplateCache.open(template, encoded, out / CACHE_DIR / name, dtype=cfg.cache_dtype)
        return LossData(name, encoded, pad_id, cache)

    return side("data", data), (side("retain", retain) if retain else None)


@torch.no_grad()
def evaluate(template, delta, sides: list[LossData], cfg: TrainConfig,
             processes: Processes = SINGLE) -> dict[str, float]:
    """Mean token NLL of the combined model on each side's whole set."""
    was_training = delta.training
    delta.eval()
    result = {}
    for side in sides:
        total, count = 0.0, 0
        for start in range(0, len(side.encoded), cfg.batch_size):
            index = list(range(start, min(start + cfg.batch_size, len(side.encoded))))
            logprob = side.combined(template, delta, side.batch(index), cfg, grad=False, processes=processes).logprob()
            total, count = total - float(logprob.sum()), count + logprob.numel()
        result[f"{side.name}_nll"] = total / max(count, 1)
    delta.train(was_training)
    return result


def plot_loss_curve(history: list[dict], evals: list[dict], path: Path) -> None:
    """Training loss per step (and evaluated NLLs) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([h["step"] for h in history], [h["loss"] for h in history], label="train loss", lw=1)
    for key in sorted({k for e in evals for k in e if k != "step"}):
        ax.plot([e["step"] for e in evals], [e[key] for e in evals], "o-", label=key)
    ax.set_xlabel("optimizer step"), ax.set_ylabel("loss / NLL"), ax.legend(), ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _optimizer_step(template, delta, main: LossData, retain: LossData | None, micro: list[list[int]],
                    retain_micro: list | None, cfg: TrainConfig, optimizer, scheduler,
                    processes: Processes = SINGLE) -> dict:
    """Accumulate gradients over the micro-batches, sum them over processes, clip, step; return the step's log
    entry (the same on every process)."""
    loss_fn, losses, tokens = get_loss(cfg.task), [], 0
    options = LossOptions.of(cfg)
    for j, index in enumerate(micro):
        batch = main.batch(index)
        forget = main.combined(template, delta, batch, cfg, processes=processes)
        other = (retain.combined(template, delta, retain.batch(retain_micro[j]), cfg, processes=processes)
                 if retain else None)
        loss = loss_fn(forget, other, options)
        scaled = loss / len(micro)
        if scaled.requires_grad or not processes.distributed:  # a process without rows has no share in it
            scaled.backward()
        losses.append(float(loss.detach()))
        tokens += batch.tokens
    processes.sum_gradients([p for p in delta.parameters() if p.requires_grad])
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(delta.parameters(), cfg.max_grad_norm)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": sum(losses) / len(losses), "lr": lr, "tokens": tokens}


def _step_batches(step: int, per_epoch: int, n: int, n_retain: int, cfg: TrainConfig):
    """The micro-batches (and retain micro-batches) of optimizer step `step`."""
    epoch, k = divmod(step, per_epoch)
    micro = epoch_batches(n, cfg.batch_size, cfg.seed, epoch)[k * cfg.grad_accum:(k + 1) * cfg.grad_accum]
    if not n_retain:
        return micro, None
    retain_batches = epoch_batches(n_retain, cfg.batch_size, cfg.seed + 1, epoch)
    return micro, [retain_batches[(k * cfg.grad_accum + j) % len(retain_batches)] for j in range(len(micro))]


def _plan(cfg: TrainConfig, auto: list[str], n: int, log: Log, processes: Processes) -> None:
    """Say what the run will do: its (resolved) length, lr and checkpoints; and why its loss may go negative."""
    per_epoch = cfg.steps_per_epoch(n)
    note = f" ({', '.join(auto)}: auto)" if auto else ""
    save = f"every {cfg.save_every} step(s)" if cfg.save_every else "none (not resumable)"
    start = f"{cfg.delta_init} embeddings" + (", zero logits" if cfg.delta_zero_start else "")
    log(f"{cfg.task}: {n} examples, {cfg.epochs} epochs × {per_epoch} steps = {cfg.epochs * per_epoch} optimizer "
        f"steps, lr {cfg.lr:g}, checkpoints {save}, delta start: {start}, delta LM weight {cfg.delta_lm_weight:g}, "
        f"prompt format {cfg.prompt_format}{note}")
    if cfg.task in LOSS_NOTES:
        log(LOSS_NOTES[cfg.task])
    if processes.distributed:
        shard = processes.template_shard
        placed = "replicated" if shard == "replicate" else f"sharded with {shard}"
        log(f"{processes.world_size} processes on {torch.device(processes.device).type}: each reads its rows of every "
            f"micro-batch of {cfg.batch_size} (global batch {cfg.batch_size * cfg.grad_accum}, the same as one "
            f"process); template {placed}")
        if processes.mixed_precision != "no":
            log(f"accelerate's mixed_precision={processes.mixed_precision} is not applied: the delta trains in float32 "
                "(--dtype bfloat16 puts the template, the bulk of the compute, in bfloat16)")


def _write_log(out: Path, result: TrainResult, run: dict) -> None:
    """train_log.json (history, evaluations, metrics and `run`: config, auto keys, identity, world size) and the
    loss curve."""
    atomic_write_json(out / LOG_JSON, {"history": result.history, "evals": result.evals, "metrics": result.metrics,
                                       **run})
    plot_loss_curve(result.history, result.evals, out / CURVE_PNG)


def train(template: torch.nn.Module, delta: torch.nn.Module, data: list[Encoded], cfg: TrainConfig,
          out: str | Path, *, pad_id: int, retain: list[Encoded] | None = None, resume: bool = False,
          identity: dict[str, str] | None = None, on_step: Callable[[int, float], None] | None = None,
          log: Log | None = None, processes: Processes = SINGLE) -> TrainResult:
    """Train `delta` (in place) so that rule(template, delta) minimises `cfg.task` on `data` (and `retain`).

    Auto settings (`epochs`, `save_every` unset) are resolved for `len(data)`. Writes `out/checkpoint/` every
    `save_every` steps, `out/template_cache/`, `out/loss_curve.png` and `out/train_log.json`; `resume=True`
    continues from `out/checkpoint/` after checking that the config (harmless keys aside) and `identity` (e.g.
    data and template fingerprints, stored with every checkpoint) are the checkpoint's. `on_step(step, loss)` runs
    after every optimizer step; `log` receives one-line notes (plan, cache size). `processes` says which process
    of a multi-process run this is (`distributed.launched_processes`): every process runs this function, reads
    its rows of each micro-batch and ends with the same delta; only the main process logs and writes files.
    """
    from tqdm.auto import tqdm

    out, identity = Path(out), identity or {}
    log = log if log is not None and processes.is_main else (lambda _: None)
    auto = [k for k in AUTO_KEYS if getattr(cfg, k) is None]
    cfg = cfg.resolved(len(data))
    get_loss(cfg.task)  # fail early on an unknown task
    meta = read_state(out / CHECKPOINT_DIR) if resume else None
    if meta is not None:
        check_resumable(out / CHECKPOINT_DIR, meta, cfg.to_dict(), identity)
    template = place_template(template, processes)
    delta.train()
    processes.broadcast_parameters(delta)
    _plan(cfg, auto, len(data), log, processes)
    main, side_retain = _sides(template, data, retain, cfg, out, pad_id, log, processes)
    sides = [s for s in (main, side_retain) if s is not None]
    for table in (delta.get_input_embeddings(), delta.get_output_embeddings()):  # one tensor when tied
        table.weight.requires_grad_(cfg.train_embeddings)
    trained = [p for p in delta.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = cfg.steps_per_epoch(len(data))
    total = cfg.epochs * per_epoch
    schedule = partial(cosine_with_warmup, warmup=round(cfg.warmup_ratio * total), total=total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    result, step = TrainResult(), 0
    torch.manual_seed(cfg.seed)
    if resume:
        meta = load_checkpoint(out / CHECKPOINT_DIR, delta, optimizer, scheduler)
        step, result.history, result.evals = meta["step"], meta["history"], meta["evals"]
        log(f"resumed from {out / CHECKPOINT_DIR} at step {step} of {total}")
    show = cfg.progress and processes.is_main
    bar = tqdm(total=total, initial=step, disable=not show, desc=f"train {cfg.task}", unit="step")
    while step < total:
        started = time.perf_counter()
        micro, retain_micro = _step_batches(step, per_epoch, len(data), len(retain or []), cfg)
        entry = _optimizer_step(template, delta, main, side_retain, micro, retain_micro, cfg, optimizer, scheduler,
                                processes)
        step += 1
        result.history.append({"step": step, **entry})
        bar.update(1)
        bar.set_postfix(loss=f"{entry['loss']:.4f}", tok_s=f"{entry['tokens'] / (time.perf_counter() - started):.0f}")
        if step == total or (cfg.eval_every and step % cfg.eval_every == 0):
            result.evals.append({"step": step, **evaluate(template, delta, sides, cfg, processes)})
        if cfg.save_every and step % cfg.save_every == 0 and step < total:
            if processes.is_main:
                save_checkpoint(out / CHECKPOINT_DIR, delta, optimizer, scheduler, {
                    "step": step, "total": total, "history": result.history, "evals": result.evals,
                    "config": cfg.to_dict(), "identity": identity, "world_size": processes.world_size})
            processes.barrier()  # no process runs ahead of a checkpoint that is not on disk yet
        if on_step is not None:
            on_step(step, entry["loss"])
    bar.close()
    result.metrics = {"final_loss": result.history[-1]["loss"] if result.history else None, "steps": total,
                      **(result.evals[-1] if result.evals else {})}
    if processes.is_main:
        _write_log(out, result, {"config": cfg.to_dict(), "auto": auto, "identity": identity,
                                 "world_size": processes.world_size})
    return result
