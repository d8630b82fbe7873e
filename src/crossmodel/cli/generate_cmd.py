"""`crossmodel generate`: one model's continuation of a prompt (the steering stage extends it with deltas)."""

from __future__ import annotations

import typer

from crossmodel.cli.app import app


@app.command()
def generate(
    model: str = typer.Option(..., help="zoo name, HF model dir, .gguf file or hub id"),
    prompt: str = typer.Option(..., help="the prompt text"),
    chat: bool = typer.Option(False, help="wrap the prompt as a user turn with the model's chat template"),
    max_new_tokens: int = typer.Option(64, help="how many tokens to generate at most"),
    temperature: float = typer.Option(0.0, help="0 = greedy; > 0 samples"),
    seed: int = typer.Option(0, help="sampling seed"),
) -> None:
    """Print the model's continuation of PROMPT."""
    from crossmodel.models import generate_text, load_model

    try:
        loaded = load_model(model)
        text = generate_text(loaded.model, loaded.tokenizer, prompt, chat=chat, max_new_tokens=max_new_tokens,
                             temperature=temperature, seed=seed)
    except (ValueError, FileNotFoundError, OSError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(text)
