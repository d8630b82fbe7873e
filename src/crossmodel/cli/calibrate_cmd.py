"""`crossmodel calibrate`: choose the steering strength α for one user model and delta on the user's dev data,
and write CAL/calibration.json for `--calibration CAL` (docs/STEERING.md, "Choosing α per model")."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from crossmodel.cli.app import command
from crossmodel.cli.options import Chat, Dtype, Model, PromptFormat

NO_GAIN_EXIT = 3  # --require-gain and no α helps; 1 stays "a mistake in the command"


@command()
def calibrate(
    model: Model,
    delta: str = typer.Option(..., help="the delta directory (`crossmodel train`)"),
    data: Path = typer.Option(..., help="dev data, a QA / instruction file (--format); with --retain, the forget "
                                        "set"),
    out: Path = typer.Option(..., help="folder for calibration.json (only that file is written; an earlier one is "
                                       "replaced)"),
    map: Optional[str] = typer.Option(None, help="token map directory (`crossmodel map`) when the delta's "
                                                 "vocabulary is not the model's; '-' or none = the same vocabulary"),
    format: str = typer.Option("tofu", help="file format of --data and --retain: tofu | alpaca | chat"),
    retain: Optional[Path] = typer.Option(None, help="unlearning: the retain set; α must raise the forget NLL "
                                                     "without raising the retain NLL beyond its standard error"),
    alphas: str = typer.Option("0,0.25,0.5,0.75,1,1.5,2", help="the α grid, comma-separated (0 is always added)"),
    limit: Optional[int] = typer.Option(None, help="use the first N items of --data (and of --retain)"),
    gen_items: int = typer.Option(8, help="greedy answers per α on the first K items, judged degenerate or not "
                                          "as `crossmodel eval` counts them; 0 skips generation"),
    max_new_tokens: int = typer.Option(64, help="token budget of those greedy answers"),
    batch_size: int = typer.Option(4, help="items per batch"),
    dtype: Dtype = "float32",
    chat: Chat = True,
    prompt_format: PromptFormat = "auto",
    require_gain: bool = typer.Option(False, help=f"exit {NO_GAIN_EXIT} (one line on stderr) when no α ≠ 0 helps: "
                                                  "for CI pipelines that should not ship a useless delta"),
) -> None:
    """Choose the steering strength α for one delta on MODEL with your own dev data: per α of the grid, the mean
    per-token NLL of the reference answers through the steered model (what `eval --suite nll` measures), its paired
    gap to α = 0 ± standard error, and the share of degenerate greedy answers. The chosen α has the lowest NLL of
    those that lower it by more than one standard error without more degenerate answers than α = 0 (with --retain:
    the highest forget NLL, the retain NLL not worse beyond its standard error); else α = 0. Writes
    OUT/calibration.json, which `generate`, `chat`, `eval` and `serve` take as --calibration."""
    from crossmodel.eval.calibrate import CalibrateConfig, grid_table, parse_alphas, run_calibration

    config = CalibrateConfig(model=model, delta=delta, data=str(data), out=str(out), token_map=map,
                             retain=str(retain) if retain else None, format=format, alphas=parse_alphas(alphas),
                             limit=limit, gen_items=gen_items, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             chat=chat, prompt_format=prompt_format, dtype=dtype)
    result = run_calibration(config, log=lambda line: typer.echo(line, err=True))
    typer.echo(grid_table(result.grid, result.alpha))
    if result.alpha == 0:
        typer.echo(f"this delta does not help {model} on {data}: α = 0\n({result.reason})")
    else:
        typer.echo(f"chosen: {result.reason}")
    typer.echo(f"wrote {result.path}; use it with --calibration {out}")
    if require_gain and result.alpha == 0:
        typer.secho(f"error: --require-gain: no α ≠ 0 helps {model} with delta {delta} on {data} (see {result.path})",
                    fg="red", err=True)
        raise typer.Exit(NO_GAIN_EXIT)
