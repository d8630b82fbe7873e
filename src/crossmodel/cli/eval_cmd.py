"""`crossmodel eval` (one suite on a model, plain and steered, with a report) and `crossmodel report` (runs side
by side)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from crossmodel.cli.app import command
from crossmodel.cli.options import (Alphas, Calibration, Chat, Deltas, Dtype, ExtensionPenalty, Maps, Model,
                                    PromptFormat, Rule)


@command("eval")
def eval_command(
    model: Model,
    suite: str = typer.Option(..., help="tofu | qa | nll | shift | ifeval"),
    data: list[str] = typer.Option(..., help="tofu: TOFU folder or split=FILE (repeat); qa/nll/shift: one file; "
                                             "ifeval: the IFEval prompts (input_data.jsonl)"),
    out: Path = typer.Option(..., help="output folder; re-run with the same one to resume"),
    delta: Deltas = [],
    alpha: Alphas = [],
    map: Maps = [],
    rule: Rule = None,
    extension_penalty: ExtensionPenalty = 2.0,
    format: str = typer.Option("tofu", help="qa/nll/shift file format: tofu | alpaca | chat"),
    limit: Optional[int] = typer.Option(None, help="evaluate the first N items of each split / file"),
    max_new_tokens: Optional[int] = typer.Option(None, help="generation budget (tofu 200, qa 128, ifeval 256)"),
    chat: Chat = True,
    prompt_format: PromptFormat = "auto",
    batch_size: int = typer.Option(4, help="items per batch"),
    forget: str = typer.Option("forget10", help="tofu forget set: forget01 | forget05 | forget10"),
    split: list[str] = typer.Option([], help="tofu splits to run (default: all four)"),
    reference: Optional[Path] = typer.Option(None, help="tofu: eval folder of a retain-only model (forget quality); "
                                                        "refused when it was evaluated on other data or settings"),
    score_eos: bool = typer.Option(False, help="tofu: score each answer with the end-of-answer token, as "
                                               "locuslab/open-unlearning do (changes short answers' figures ~20%)"),
    baseline: bool = typer.Option(True, help="with --delta, also evaluate the plain model (before/after)"),
    after: Optional[str] = typer.Option(None, help="shift: fine-tuned copy of --model"),
    model_b: Optional[str] = typer.Option(None, help="shift: the second model"),
    after_b: Optional[str] = typer.Option(None, help="shift: fine-tuned copy of --model-b"),
    shift_map: Optional[str] = typer.Option(None, help="shift: token map from --model to --model-b"),
    nltk_data: Optional[Path] = typer.Option(None, envvar="NLTK_DATA",
                                             help="ifeval: folder holding NLTK's tokenizers/punkt_tab (the checker "
                                                  "never downloads it), e.g. data/nltk_data"),
    dtype: Dtype = "float32",
    calibration: Calibration = None,
) -> None:
    """Evaluate a model (optionally steered by deltas) and write results.json, report.md and plots to OUT."""
    from crossmodel.eval.data import TOFU_SPLITS
    from crossmodel.eval.runner import EvalConfig, run_eval
    from crossmodel.eval.report import markdown_table, summary_columns

    config = EvalConfig(model=model, suite=suite, data=tuple(data), out=str(out), deltas=tuple(delta),
                        alphas=tuple(alpha), maps=tuple(map), rule=rule,
                        extension_penalty=extension_penalty, format=format, limit=limit,
                        max_new_tokens=max_new_tokens, chat=chat, prompt_format=prompt_format,
                        batch_size=batch_size, forget=forget,
                        splits=tuple(split) or tuple(TOFU_SPLITS),
                        reference=str(reference) if reference else None, baseline=baseline, after=after,
                        model_b=model_b, after_b=after_b, shift_map=shift_map, score_eos=score_eos,
                        nltk_data=str(nltk_data) if nltk_data else None, dtype=dtype, calibration=calibration)
    results = run_eval(config, log=lambda line: typer.echo(line, err=True))
    typer.echo(markdown_table(summary_columns(results["variants"])))
    if results.get("alpha_source"):
        typer.echo(f"steered at α = {', '.join(f'{a:g}' for a in results['alphas'])} ({results['alpha_source']})")
    typer.echo(f"report: {out / 'report.md'}")


@command("report")
def report_command(dirs: list[Path] = typer.Argument(..., help="`crossmodel eval` output folders")) -> None:
    """Put evaluation runs side by side in one markdown table; IFEval runs (or variants) over the same prompts
    also get a paired comparison against the first column (McNemar's exact test, difference and SE)."""
    from crossmodel.eval.report import compare_runs

    typer.echo(compare_runs(list(dirs)))
