"""`crossmodel train`: flags (or a YAML/JSON config with the same keys) → TrainConfig → run_training → print.

Every TrainConfig key is a flag; its help text and default are read from the field, so they have one home.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Optional

import typer

from crossmodel.cli.app import command
from crossmodel.train.config import AUTO_KEYS, TrainConfig

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# accelerate 1.x's `launch --cpu` runs the script once (multi-CPU there means mpirun; accelerate issue #2741)
LAUNCH_CPU_NOTE = ("`accelerate launch --cpu` started one process; for N CPU processes run `accelerate launch "
                   "--multi_gpu --num_processes N ...` (torchrun; gloo on CPU, docs/SCALING.md)")


def _opt(name: str, *decls: str) -> Any:
    """A flag for TrainConfig.<name>: None unless given (so --config values stand), the field's help and default."""
    default = FIELDS[name].default
    shown: Any = "auto" if name in AUTO_KEYS else (name if isinstance(default, bool) else default)
    return typer.Option(None, *decls, help=FIELDS[name].metadata["help"],
                        show_default=False if shown in (None, "") else str(shown))


@command()
def train(
    template: Optional[str] = _opt("template"), data: Optional[str] = _opt("data"), out: Optional[str] = _opt("out"),
    retain: Optional[str] = _opt("retain"), data_format: Optional[str] = _opt("data_format"),
    prompt_format: Optional[str] = _opt("prompt_format"),
    limit: Optional[int] = _opt("limit"), task: Optional[str] = _opt("task"), rule: Optional[str] = _opt("rule"),
    alpha: Optional[float] = _opt("alpha"), delta_layers: Optional[int] = _opt("delta_layers"),
    delta_d_model: Optional[int] = _opt("delta_d_model"), delta_heads: Optional[int] = _opt("delta_heads"),
    delta_init: Optional[str] = _opt("delta_init"),
    delta_zero_start: Optional[bool] = _opt("delta_zero_start", "--delta-zero-start/--no-delta-zero-start"),
    train_embeddings: Optional[bool] = _opt("train_embeddings", "--train-embeddings/--no-train-embeddings"),
    epochs: Optional[int] = _opt("epochs"),
    min_steps: Optional[int] = _opt("min_steps"), batch_size: Optional[int] = _opt("batch_size"),
    grad_accum: Optional[int] = _opt("grad_accum"), lr: Optional[float] = _opt("lr"),
    weight_decay: Optional[float] = _opt("weight_decay"), warmup_ratio: Optional[float] = _opt("warmup_ratio"),
    max_grad_norm: Optional[float] = _opt("max_grad_norm"), max_length: Optional[int] = _opt("max_length"),
    npo_beta: Optional[float] = _opt("npo_beta"), simnpo_beta: Optional[float] = _opt("simnpo_beta"),
    simnpo_gamma: Optional[float] = _opt("simnpo_gamma"), undial_gamma: Optional[float] = _opt("undial_gamma"),
    retain_loss: Optional[str] = _opt("retain_loss"), retain_weight: Optional[float] = _opt("retain_weight"),
    sft_kl_weight: Optional[float] = _opt("sft_kl_weight"), delta_lm_weight: Optional[float] = _opt("delta_lm_weight"),
    chunk_size: Optional[int] = _opt("chunk_size"),
    dtype: Optional[str] = _opt("dtype"), template_shard: Optional[str] = _opt("template_shard"),
    cache: Optional[bool] = _opt("cache", "--cache/--no-cache"),
    cache_dtype: Optional[str] = _opt("cache_dtype"), cache_budget_gb: Optional[float] = _opt("cache_budget_gb"),
    eval_every: Optional[int] = _opt("eval_every"), save_every: Optional[int] = _opt("save_every"),
    seed: Optional[int] = _opt("seed"), device: Optional[str] = _opt("device"),
    progress: Optional[bool] = _opt("progress", "--progress/--no-progress"),
    config: Optional[Path] = typer.Option(None, help="YAML/JSON file of TrainConfig keys; flags override it"),
    resume: bool = typer.Option(False, help="continue the unfinished run in OUT/checkpoint (same settings and data)"),
    overwrite: bool = typer.Option(False, help="start over in an OUT that holds a finished run or a checkpoint"),
) -> None:
    """Train a delta next to a frozen template (SFT or TOFU-style unlearning); the delta is saved to OUT/delta."""
    from rich import print as rprint

    from crossmodel.train import run_training
    from crossmodel.train.distributed import launched_processes

    given = {k: v for k, v in locals().items() if k in FIELDS and v is not None}
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true") and "WORLD_SIZE" not in os.environ:
        typer.echo(f"note: {LAUNCH_CPU_NOTE}")
    cfg = TrainConfig.from_file(config, **given) if config else TrainConfig(**given)
    processes = launched_processes(cfg.device, cfg.template_shard)  # one, or what `accelerate launch` started
    delta_dir = run_training(cfg, resume=resume, overwrite=overwrite, log=typer.echo, processes=processes)
    if processes.is_main:
        rprint(f"[green]delta saved to[/green] {delta_dir}  (loss curve: {Path(cfg.out) / 'loss_curve.png'})")
