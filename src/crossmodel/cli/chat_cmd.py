"""`crossmodel chat`: an interactive, streamed conversation with a (steered) model.

When the conversation outgrows a model's context (the user model's or a delta's), the oldest exchanges are
dropped, one dim line says so, and the chat goes on.
"""

from __future__ import annotations

import itertools
from typing import Any, Iterator

import typer

from crossmodel.cli.app import command
from crossmodel.cli.generate_cmd import warn_if_degenerate
from crossmodel.cli.options import Alphas, Calibration, Deltas, Maps, Model, Rule


def _fitted_stream(steered: Any, history: list[dict], max_new_tokens: int, settings: dict) -> Iterator[str] | None:
    """The reply to `history`, after dropping its oldest user/assistant pairs until it fits every context.

    Drops are made in `history` only once a reply can start. When the newest message alone does not fit, it is
    removed from `history`, a line says so, and None comes back.
    """
    from crossmodel.models.batch import ContextTooLong

    start = 0
    while True:
        stream = steered.stream(history[start:], max_new_tokens, **settings)
        try:
            first = next(stream, "")  # the context check runs before the first piece
            break
        except ContextTooLong as err:
            if start + 1 >= len(history):
                history.pop()
                typer.secho(f"(that message is too long even on its own: {err}; type a shorter one)", dim=True)
                return None
            start += 2
    if start:
        del history[:start]
        typer.secho(f"(context full: dropped the {start // 2} oldest exchange(s) of this chat)", dim=True)
    return itertools.chain([first], stream)


@command()
def chat(
    model: Model,
    deltas: Deltas = [],
    alphas: Alphas = [],
    maps: Maps = [],
    rule: Rule = None,
    max_new_tokens: int = typer.Option(256, help="longest reply in tokens"),
    temperature: float = typer.Option(0.0, help="0 = greedy; > 0 samples"),
    top_p: float = typer.Option(None, help="nucleus sampling threshold, in (0, 1]"),
    seed: int = typer.Option(0, help="sampling seed"),
    calibration: Calibration = None,
) -> None:
    """Chat in the terminal (empty line or Ctrl-D ends); replies stream as they are generated. When the
    conversation outgrows the context, the oldest exchanges are dropped; a degenerate reply is flagged on stderr."""
    from crossmodel.eval.calibration import calibrated_alphas
    from crossmodel.models import load_model
    from crossmodel.steer import delta_entries, steer, token_picker

    entries = delta_entries(deltas, alphas, maps)  # every flag is checked before a model loads
    token_picker(temperature > 0, temperature, None, top_p)
    if calibration is not None:
        entries = delta_entries(deltas, calibrated_alphas(calibration, model, deltas, alphas, maps), maps)
    settings = {"do_sample": temperature > 0, "temperature": temperature or 1.0, "top_p": top_p, "chat": True,
                "seed": seed}
    steered = steer(load_model(model), deltas=entries, rule=rule)
    steering = any(slot.alpha != 0 for slot in steered.slots)
    history: list[dict] = []
    try:
        while (line := typer.prompt("you", default="", show_default=False, prompt_suffix="> ").strip()):
            history.append({"role": "user", "content": line})
            stream = _fitted_stream(steered, history, max_new_tokens, settings)
            if stream is None:
                continue
            typer.echo("model> ", nl=False)
            pieces = []
            for piece in stream:
                pieces.append(piece)
                typer.echo(piece, nl=False)
            typer.echo()
            warn_if_degenerate("this reply", "".join(pieces), steering)
            history.append({"role": "assistant", "content": "".join(pieces)})
    except (EOFError, typer.Abort):
        typer.echo()
