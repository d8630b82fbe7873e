"""`crossmodel transplant`: flags → (optional DistillConfig) → run_transplant → print the row origins."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from crossmodel.cli.app import command


@command()
def transplant(
    delta: Path = typer.Option(..., help="source delta directory (any vocabulary)"),
    to: str = typer.Option(..., help="target model or tokenizer: zoo name, HF dir, GGUF file or hub id"),
    out: Path = typer.Option(..., help="directory of the transplanted delta"),
    mode: str = typer.Option("one-to-many", help="map mode: one-to-many | normalized | cmc"),
    map_dir: Optional[Path] = typer.Option(None, "--map", help="a prebuilt map TARGET -> DELTA (replaces --mode)"),
    layout: str = typer.Option("factored", help="factored: source rows + the map, combined on the fly (the "
                               "source's size and speed) | dense: one row per target token"),
    distill_steps: Optional[int] = typer.Option(
        None, help="alignment steps toward the original's mapped logits (default 200 with --distill-data)"),
    distill_data: Optional[Path] = typer.Option(
        None, help="texts for the alignment (TOFU-style JSON, or a text file with --distill-format text)"),
    distill_format: str = typer.Option("tofu", help="text | tofu | alpaca | chat"),
    distill_lr: float = typer.Option(1e-4, help="alignment learning rate"),
    distill_target: str = typer.Option(
        "weighted_sum", help="alignment target: weighted_sum (the transplant's own form of the original's logits) "
                             "| map (the map's own reduce, what runtime steering adds) | max | logsumexp"),
) -> None:
    """Rebuild a delta in another vocabulary (Tik-to-Tok style) so it steers that model without a token map."""
    from rich import print as rprint

    from crossmodel.train.distill import DistillConfig
    from crossmodel.train.transplant_job import run_transplant

    wanted = distill_steps is not None or distill_data is not None
    target = None if distill_target == "map" else distill_target
    cfg = DistillConfig(steps=distill_steps or DistillConfig.steps, lr=distill_lr,
                        target_reduce=target) if wanted else None
    path, record = run_transplant(delta, to, out, mode=mode, token_map=map_dir, layout=layout,
                                  distill_data=distill_data, distill_format=distill_format, cfg=cfg)
    rprint(f"[green]transplanted delta saved to[/green] {path}  rows: {record['rows']}")
    if "distill" in record:
        done = record["distill"]
        rprint(f"alignment: before {done['agreement_before']}\n           after  {done['agreement_after']}")
