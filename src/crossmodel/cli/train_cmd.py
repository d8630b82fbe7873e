"""`crossmodel train`: flags (or a YAML/JSON config with the same keys) → TrainConfig → run_training → print."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from crossmodel.cli.app import command


@command()
def train(
    template: Optional[str] = typer.Option(None, help="template model: zoo name, HF dir, GGUF file or hub id"),
    data: Optional[Path] = typer.Option(None, help="training data (forget set for unlearning), JSON/JSON-lines"),
    out: Optional[Path] = typer.Option(None, help="run directory; the delta is saved to OUT/delta"),
    retain: Optional[Path] = typer.Option(None, help="retain set (grad_diff, kl; optional for idk, npo)"),
    task: Optional[str] = typer.Option(None, help="sft | grad_ascent | grad_diff | kl | idk | npo"),
    data_format: Optional[str] = typer.Option(None, help="tofu | alpaca | chat"),
    delta_layers: Optional[int] = typer.Option(None), delta_d_model: Optional[int] = typer.Option(None),
    delta_heads: Optional[int] = typer.Option(None), epochs: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None), batch_size: Optional[int] = typer.Option(None),
    seed: Optional[int] = typer.Option(None),
    config: Optional[Path] = typer.Option(None, help="YAML/JSON file of TrainConfig keys; flags override it"),
    resume: bool = typer.Option(False, help="continue from OUT/checkpoint"),
) -> None:
    """Train a delta next to a frozen template (SFT or TOFU-style unlearning)."""
    from rich import print as rprint

    from crossmodel.train import TrainConfig, run_training

    flags = {k: str(v) if isinstance(v, Path) else v for k, v in dict(
        template=template, data=data, out=out, retain=retain, task=task, data_format=data_format,
        delta_layers=delta_layers, delta_d_model=delta_d_model, delta_heads=delta_heads, epochs=epochs, lr=lr,
        batch_size=batch_size, seed=seed).items() if v is not None}
    cfg = TrainConfig.from_file(config, **flags) if config else TrainConfig(**flags)
    delta_dir = run_training(cfg, resume=resume)
    rprint(f"[green]delta saved to[/green] {delta_dir}  (loss curve: {Path(cfg.out) / 'loss_curve.png'})")
