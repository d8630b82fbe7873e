"""`crossmodel map`: build a token map between two tokenizers and print its coverage report."""

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from crossmodel.cli.app import command


def _print_report(report, out: Path) -> None:
    cov, console = report.coverage, Console()
    table = Table(title=f"token map -> {out}")
    for col in ("user rows", "exact", "prefix", "unmapped", "padding rows", "load s", "build s"):
        table.add_column(col, justify="right")
    table.add_row(*(str(cov[k]) for k in ("rows", "exact", "prefix", "unmapped", "padding_rows")),
                  f"{report.load_seconds:.2f}", f"{report.build_seconds:.3f}")
    console.print(f"user:  {report.user}\ndelta: {report.delta}", markup=False)
    console.print(table)
    if "distance_histogram" in cov:
        hist = "  ".join(f"{d}:{n}" for d, n in sorted(cov["distance_histogram"].items(), key=lambda x: int(x[0])))
        console.print(f"distance histogram (prefix matches): {hist}")
    console.print("unmapped examples: " + ", ".join(f"{i} {t!r}" for i, t in report.unmapped_examples), markup=False)


@command("map")
def map_command(
    user: str = typer.Option(..., help="user model or tokenizer: zoo name | HF model dir | delta dir | "
                                       "tokenizer.json | .model | .gguf | known tokenizer name"),
    delta: str = typer.Option(..., help="delta model or tokenizer (same forms as --user; e.g. the delta's dir)"),
    out: Path = typer.Option(..., help="output directory for token_map.safetensors + token_map.json"),
    mode: str = typer.Option("cmc", help="cmc | normalized | one-to-many"),
    user_rows: int = typer.Option(None, help="user model logits width (default: the model's, else the tokenizer size)"),
    delta_rows: int = typer.Option(None, help="delta model logits width (default: the model's, else the tokenizer "
                                              "size)"),
    fallback: str = typer.Option("none", help="normalized: none | first_byte | unk"),
    reduce: str = typer.Option("max", help="one-to-many: max | logsumexp | weighted_sum"),
    export_cmc: str = typer.Option(None, help="also write the reference PREFIX_id/match/token.json triple"),
) -> None:
    """Build a token map (user id -> delta id) and print exact / prefix / unmapped counts."""
    from crossmodel.models.load import tokenizer_source
    from crossmodel.vocab.build import MapConfig, make_map

    (user, model_user_rows), (delta, model_delta_rows) = tokenizer_source(user), tokenizer_source(delta)
    config = MapConfig(user=user, delta=delta, mode=mode, user_rows=user_rows or model_user_rows,
                       delta_rows=delta_rows or model_delta_rows,
                       fallback=fallback, reduce=reduce)
    _, report = make_map(config, out=out, export_prefix=export_cmc)
    _print_report(report, out)
