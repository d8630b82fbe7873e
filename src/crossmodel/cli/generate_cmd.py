"""`crossmodel generate`: a model's continuation of prompts, optionally steered by one or more deltas."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from crossmodel.cli.app import command


def read_prompts(prompt: str | None, prompts_file: Path | None) -> list[str]:
    """--prompt, or --prompts-file: one prompt per line (.txt) or {"prompt": ...} per line (.jsonl)."""
    if (prompt is None) == (prompts_file is None):
        raise ValueError("give exactly one of --prompt TEXT or --prompts-file FILE")
    if prompt is not None:
        return [prompt]
    if not prompts_file.is_file():
        raise FileNotFoundError(f"--prompts-file {prompts_file} not found")
    lines = [line for line in prompts_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if prompts_file.suffix == ".jsonl":
        try:
            return [json.loads(line)["prompt"] for line in lines]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{prompts_file}: each line must be a JSON object with a 'prompt' key ({err})") from None
    if not lines:
        raise ValueError(f"--prompts-file {prompts_file} holds no prompts")
    return lines


@command()
def generate(
    model: str = typer.Option(..., help="user model: zoo name, HF model dir, .gguf file or hub id"),
    prompt: str = typer.Option(None, help="the prompt text"),
    prompts_file: Path = typer.Option(None, help="one prompt per line (.txt) or {'prompt': ...} lines (.jsonl)"),
    deltas: list[str] = typer.Option([], "--delta", help="delta directory; repeat to compose several deltas"),
    alphas: list[float] = typer.Option([], "--alpha", help="strength: one for all deltas or one per --delta (default: saved)"),
    maps: list[str] = typer.Option([], "--map", help="token map dir per --delta ('-' = same vocabulary)"),
    rule: str = typer.Option(None, help="basenormalize | normalize | add (default: the deltas' own)"),
    fill: float = typer.Option(0.0, help="logit for user tokens the map leaves unmapped (reference: 0)"),
    sync: str = typer.Option("incremental", help="cross-vocab sync: incremental (cached) | full (reference)"),
    chat: bool = typer.Option(False, help="wrap each prompt as a user turn with the chat template"),
    max_new_tokens: int = typer.Option(64, help="how many tokens to generate at most"),
    sample: bool = typer.Option(False, help="sample instead of greedy (temperature 1 unless given)"),
    temperature: float = typer.Option(0.0, help="0 = greedy; > 0 samples"),
    top_k: int = typer.Option(None, help="sample from the k most likely tokens"),
    top_p: float = typer.Option(None, help="nucleus sampling threshold"),
    stops: list[str] = typer.Option([], "--stop", help="stop string (repeatable); not included in the output"),
    batch_size: int = typer.Option(8, help="prompts generated together (left-padded batch)"),
    seed: int = typer.Option(0, help="sampling seed"),
) -> None:
    """Print the (steered) continuation of each prompt."""
    from crossmodel.models import load_model
    from crossmodel.steer import delta_entries, steer

    prompts = read_prompts(prompt, prompts_file)
    steered = steer(load_model(model), deltas=delta_entries(deltas, alphas, maps), rule=rule, fill=fill, sync=sync)
    do_sample = sample or temperature > 0
    texts = [t for i in range(0, len(prompts), batch_size) for t in steered.generate(
        prompts[i:i + batch_size], max_new_tokens, do_sample=do_sample, temperature=temperature or 1.0,
        top_k=top_k, top_p=top_p, stop=stops, chat=chat, seed=seed)]
    for i, text in enumerate(texts):
        typer.echo(text if len(texts) == 1 else f"=== {i}: {prompts[i][:60]!r}\n{text}")
