"""The Typer application that every stage's command module registers on."""

import typer

app = typer.Typer(help="Cross-model Control: train one delta, steer many LLMs.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def _root() -> None:
    """Cross-model Control: train one delta, steer many LLMs."""


@app.command()
def version() -> None:
    """Print the crossmodel version."""
    from crossmodel import __version__

    typer.echo(__version__)
