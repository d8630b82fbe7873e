"""`crossmodel chat`: an interactive, streamed conversation with a (steered) model."""

from __future__ import annotations

import typer

from crossmodel.cli.app import command


@command()
def chat(
    model: str = typer.Option(..., help="user model: zoo name, HF model dir, .gguf file or hub id"),
    deltas: list[str] = typer.Option([], "--delta", help="delta directory; repeat to compose several deltas"),
    alphas: list[float] = typer.Option([], "--alpha", help="one for all deltas or one per --delta"),
    maps: list[str] = typer.Option([], "--map", help="token map dir per --delta ('-' = same vocabulary)"),
    rule: str = typer.Option(None, help="basenormalize | normalize | add (default: the deltas' own)"),
    max_new_tokens: int = typer.Option(256, help="longest reply in tokens"),
    temperature: float = typer.Option(0.0, help="0 = greedy; > 0 samples"),
    top_p: float = typer.Option(None, help="nucleus sampling threshold"),
    seed: int = typer.Option(0, help="sampling seed"),
) -> None:
    """Chat in the terminal (empty line or Ctrl-D ends); replies stream as they are generated."""
    from crossmodel.models import load_model
    from crossmodel.steer import delta_entries, steer

    try:
        steered = steer(load_model(model), deltas=delta_entries(deltas, alphas, maps), rule=rule)
        history: list[dict] = []
        while (line := typer.prompt("you", default="", show_default=False, prompt_suffix="> ").strip()):
            history.append({"role": "user", "content": line})
            typer.echo("model> ", nl=False)
            pieces = []
            for piece in steered.stream(history, max_new_tokens, do_sample=temperature > 0,
                                        temperature=temperature or 1.0, top_p=top_p, chat=True, seed=seed):
                pieces.append(piece)
                typer.echo(piece, nl=False)
            typer.echo()
            history.append({"role": "assistant", "content": "".join(pieces)})
    except (EOFError, typer.Abort):
        typer.echo()
