"""The Typer application that every stage's command module registers on, and its one error rule.

Every command is registered with `@command(...)` (or `@command(..., on=zoo_app)`): an ordinary mistake — a
missing file, a bad flag value, malformed data — ends as one red `error: ...` line and exit code 1, never a
traceback. Set `CROSSMODEL_DEBUG=1` to see the traceback anyway (for bug reports).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable

import typer

app = typer.Typer(help="Cross-model Control: train one delta, steer many LLMs.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)

# What a user's mistake raises (bad values, missing or unreadable files, a failed download): one line, exit 1.
USER_ERRORS = (ValueError, OSError, RuntimeError, UnicodeDecodeError, json.JSONDecodeError, KeyError)
DEBUG_ENV = "CROSSMODEL_DEBUG"


def fail(message: str) -> None:
    """Print `error: message` in red on stderr and exit with code 1."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(1)


def one_line_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command so that USER_ERRORS become `error: ...` + exit 1, and Ctrl-C exits 130 quietly."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            typer.secho("interrupted", fg="yellow", err=True)
            raise typer.Exit(130)
        except USER_ERRORS as err:
            if os.environ.get(DEBUG_ENV):
                raise
            text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
            fail(" ".join(text.split()) or type(err).__name__)

    return wrapper


def command(name: str | None = None, *, on: typer.Typer = app) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`@command()` = `@app.command()` with `one_line_errors`; `on=` registers on a sub-application."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        return on.command(name)(one_line_errors(fn))

    return register


@app.callback()
def _root() -> None:
    """Cross-model Control: train one delta, steer many LLMs."""


@command()
def version() -> None:
    """Print the crossmodel version."""
    from crossmodel import __version__

    typer.echo(__version__)
