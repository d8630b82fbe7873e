"""`crossmodel generate`: a model's continuation of prompts, optionally steered by one or more deltas."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from crossmodel.cli.app import command
from crossmodel.cli.options import (Alphas, Calibration, Chat, Deltas, Dtype, ExtensionPenalty, Maps, Model,
                                    Rule)


def _jsonl_prompt(line: str, where: str) -> str:
    try:
        prompt = json.loads(line)["prompt"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{where}: each line must be a JSON object with a 'prompt' key ({err})") from None
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"{where}: 'prompt' must be non-empty text, got {prompt!r}")
    return prompt


def read_prompts(prompt: str | None, prompts_file: Path | None) -> list[str]:
    """--prompt, or --prompts-file: one prompt per line (.txt) or {"prompt": ...} per line (.jsonl)."""
    from crossmodel.io import read_text

    if (prompt is None) == (prompts_file is None):
        raise ValueError("give exactly one of --prompt TEXT or --prompts-file FILE")
    if prompt is not None:
        if not prompt:
            raise ValueError("--prompt is empty; give some text for the model to continue")
        return [prompt]
    if not prompts_file.is_file():
        raise FileNotFoundError(f"--prompts-file {prompts_file} not found")
    lines = [(n, line) for n, line in enumerate(read_text(prompts_file, "--prompts-file").splitlines(), 1)
             if line.strip()]
    if not lines:
        raise ValueError(f"--prompts-file {prompts_file} holds no prompts")
    if prompts_file.suffix == ".jsonl":
        return [_jsonl_prompt(line, f"{prompts_file}:{n}") for n, line in lines]
    return [line for _, line in lines]


def degenerate_warning(label: str, text: str, steered: bool) -> str | None:
    """One warning line when an answer is degenerate by the rule `crossmodel eval` counts with (None otherwise):
    a steered answer suggests a lower α, a plain one says that the model alone answered so."""
    from crossmodel.eval.metrics import degenerate_reason

    reason = degenerate_reason(text.strip())
    if reason is None:
        return None
    advice = ("try a lower --alpha or `crossmodel calibrate`" if steered else
              "this is the model alone, no delta involved")
    return f"warning: {label} {reason} (degenerate by the rule `crossmodel eval` counts with); {advice}"


def warn_if_degenerate(label: str, text: str, steered: bool) -> None:
    """Print `degenerate_warning` on stderr when there is one."""
    if (line := degenerate_warning(label, text, steered)) is not None:
        typer.secho(line, fg="yellow", err=True)


@command()
def generate(
    model: Model,
    prompt: str = typer.Option(None, help="the prompt text"),
    prompts_file: Path = typer.Option(None, help="one prompt per line (.txt) or {'prompt': ...} lines (.jsonl)"),
    deltas: Deltas = [],
    alphas: Alphas = [],
    maps: Maps = [],
    rule: Rule = None,
    fill: float = typer.Option(0.0, help="logit for user tokens the map leaves unmapped (reference: 0)"),
    sync: str = typer.Option("incremental", help="cross-vocab sync: incremental (cached) | full (reference)"),
    extension_penalty: ExtensionPenalty = 2.0,
    chat: Chat = True,
    max_new_tokens: int = typer.Option(64, help="how many tokens to generate at most"),
    sample: bool = typer.Option(False, help="sample instead of greedy (at temperature 1 unless --temperature "
                                            "is given; --sample --temperature 0 is refused)"),
    temperature: float = typer.Option(None, help="> 0 samples at this temperature; 0 = greedy (the default)"),
    top_k: int = typer.Option(None, help="sample from the k most likely tokens (>= 1)"),
    top_p: float = typer.Option(None, help="nucleus sampling threshold, in (0, 1]"),
    stops: list[str] = typer.Option([], "--stop", help="stop string (repeatable); not included in the output"),
    batch_size: int = typer.Option(8, help="prompts generated together (left-padded batch)"),
    seed: int = typer.Option(0, help="sampling seed"),
    dtype: Dtype = "float32",
    calibration: Calibration = None,
) -> None:
    """Print the (steered) continuation of each prompt; a line on stderr flags an answer that is degenerate."""
    from crossmodel.eval.calibration import calibrated_alphas
    from crossmodel.models import load_model
    from crossmodel.models.load import model_dtype
    from crossmodel.steer import delta_entries, steer, token_picker
    from crossmodel.steer.generate import sampling

    prompts = read_prompts(prompt, prompts_file)
    entries = delta_entries(deltas, alphas, maps)  # every flag is checked before a model loads
    do_sample, temperature = sampling(sample, temperature)
    token_picker(do_sample, temperature, top_k, top_p)
    if calibration is not None:
        entries = delta_entries(deltas, calibrated_alphas(calibration, model, deltas, alphas, maps), maps)
    steered = steer(load_model(model, dtype=model_dtype(dtype)), deltas=entries, rule=rule, fill=fill, sync=sync,
                    extension_penalty=extension_penalty)
    texts = [t for i in range(0, len(prompts), batch_size) for t in steered.generate(
        prompts[i:i + batch_size], max_new_tokens, do_sample=do_sample, temperature=temperature,
        top_k=top_k, top_p=top_p, stop=stops, chat=chat, seed=seed)]
    for i, text in enumerate(texts):
        typer.echo(text if len(texts) == 1 else f"=== {i}: {prompts[i][:60]!r}\n{text}")
    steering = any(slot.alpha != 0 for slot in steered.slots)
    for i, text in enumerate(texts):
        warn_if_degenerate("the answer" if len(texts) == 1 else f"answer {i}", text, steering)
