"""`crossmodel facts`: write fictitious-author QA sets in TOFU's format (facts, forget, retain) for `train`."""

from __future__ import annotations

from pathlib import Path

import typer

from crossmodel.cli.app import command


@command()
def facts(
    out: Path = typer.Option(..., help="folder for facts.json, forget.json and retain.json"),
    authors: int = typer.Option(6, help="fictitious authors, five QA pairs each"),
    forget: int = typer.Option(2, help="authors in forget.json (the first ones); the rest go to retain.json"),
    seed: int = typer.Option(0, help="seed of the generator: the same seed writes the same files everywhere"),
) -> None:
    """Write generated fictitious-author facts (TOFU format, JSON lines): all, a forget split and a retain split."""
    from crossmodel.train import write_fact_splits

    for name, path in write_fact_splits(out, authors, forget, seed).items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        typer.echo(f"{path}  ({lines} QA pairs)")
