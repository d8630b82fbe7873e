"""`crossmodel demo`: the README's main command — flags → DemoConfig → run_demo → print the tables."""

from __future__ import annotations

from typing import Optional

import typer

from crossmodel.cli.app import command


@command()
def demo(
    models: Optional[str] = typer.Option(None, help="comma-separated user models (default: SmolLM2, Gemma, Qwen 0.5B)"),
    facts: int = typer.Option(6, help="fictitious authors (5 facts each)"),
    forget: int = typer.Option(2, help="authors the unlearning delta makes the models forget"),
    epochs: int = typer.Option(10, help="epochs of the knowledge delta"),
    out: str = typer.Option("crossmodel-demo", help="report folder (re-running with it reuses finished steps)"),
    seed: int = typer.Option(0, help="seed of the facts and the deltas"),
    threads: int = typer.Option(1, help="torch CPU threads per model; 1 is fastest when models run side by side"),
    parallel: int = typer.Option(2, help="user models evaluated at a time (and a model pulled while deltas train)"),
) -> None:
    """Train a knowledge delta and an unlearning delta once, steer three real LLMs with them, write a report."""
    import torch
    from rich import print as rprint

    from crossmodel.demo import DemoConfig, examples_table, knowledge_table, run_demo, unlearning_table

    torch.set_num_threads(threads)  # several threads spin against each other when other processes share the cores
    flags = {"models": tuple(m.strip() for m in models.split(",") if m.strip())} if models else {}
    config = DemoConfig(out=out, facts=facts, forget=forget, epochs=epochs, seed=seed, parallel=parallel, **flags)
    results = run_demo(config, log=rprint)
    n = results["forget_records"]
    typer.echo(f"\nKnowledge transfer (ROUGE-L recall, answer NLL):\n{knowledge_table(results)}\n")
    typer.echo(f"{results['facts'][n]['question']}\n{examples_table(results, n, ('before', 'knowledge'))}\n")
    typer.echo(f"Unlearning the first {forget} authors:\n{unlearning_table(results)}\n")
    rprint(f"[green]report:[/green] {out}/report.md  (results.json, plots)  wall time {results['wall_s']:.0f} s")
