"""The `crossmodel` command line: one subcommand per pipeline stage, each a thin layer over the library.

Each stage's commands live in their own module here (flags -> config -> one library call -> print) and register
on the shared `app` when imported below, in pipeline order. Nothing in the library imports this package.
"""

from crossmodel.cli.app import app

# Stage command modules, one import line each, in pipeline order:
from crossmodel.cli import map_cmd  # (vocab)
from crossmodel.cli import zoo_cmd  # (models)
from crossmodel.cli import generate_cmd  # (steer)
from crossmodel.cli import chat_cmd  # (steer: chat)
from crossmodel.cli import facts_cmd  # (train: data)
from crossmodel.cli import train_cmd  # (train)
from crossmodel.cli import eval_cmd  # (eval)
from crossmodel.cli import calibrate_cmd  # (eval: α per model)
from crossmodel.cli import transplant_cmd  # (transplant)
from crossmodel.cli import demo_cmd  # (demo)
from crossmodel.cli import serve_cmd  # (serve: vLLM)


def main() -> None:
    """Entry point of the console script."""
    app()
