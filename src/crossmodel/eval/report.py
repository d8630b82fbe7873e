"""Reports: `results.json` → a markdown report with a before/after table and PNG plots; several runs side by side.

A run's `results.json` holds `config`, `suite` and `variants` (e.g. "base": the plain model, "steered": the
model with its deltas), each variant's summary as the suite returned it. Plots are written with matplotlib's
non-interactive Agg backend. IFEval runs also get a per-instruction-type table and plot, and a paired comparison
(McNemar's exact test on prompt-level loose, `crossmodel.eval.paired`) between variants and between runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crossmodel.eval.ifeval import read_responses
from crossmodel.eval.paired import paired_comparison
from crossmodel.io import atomic_write_bytes

RESULTS = "results.json"
REPORT = "report.md"
DETAIL_KEYS = ("per_instruction_type",)  # in results.json, not in the summary tables (own table and plot)
PAIRED_OUTCOME = "prompt_loose"  # IFEval's per-prompt outcome the paired test compares
PAIRED_HEADING = ["## Paired comparison (IFEval prompt-level loose)", "",
                  "Paired by prompt: McNemar's exact test on the discordant prompts (only A / only B follow every "
                  "instruction), and B − A with its paired standard error.", ""]
SPLIT_METRICS = ("rouge_l_recall", "probability", "truth_ratio")
SPLIT_ORDER = ("forget", "retain", "real_authors", "world_facts")  # TOFU's own order, not alphabetical


def _rank(split: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)


def flatten(summary: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a summary as "a/b" keys (per-split TOFU numbers become "forget/probability")."""
    flat: dict[str, float] = {}
    for key, value in summary.items():
        if key == "splits":
            value = {split: value[split] for split in sorted(value, key=_rank)}
        name = prefix if key == "splits" else f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/" if name else ""))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def summary_columns(variants: dict[str, dict], prefix: str = "") -> dict[str, dict[str, float]]:
    """One table column per variant ("PREFIXvariant"): its flattened summary without the detail keys."""
    return {f"{prefix}{name}": flatten({k: v for k, v in summary.items() if k not in DETAIL_KEYS})
            for name, summary in variants.items()}


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"


def markdown_table(columns: dict[str, dict[str, float]], delta: bool = True) -> str:
    """Rows = metrics (union over columns, in first-seen order), one column per variant, and Δ = last − first."""
    names = list(columns)
    metrics = list(dict.fromkeys(k for flat in columns.values() for k in flat))
    head = ["metric", *names] + (["Δ"] if delta and len(names) > 1 else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for metric in metrics:
        cells = [columns[n].get(metric) for n in names]
        row = [metric, *map(_fmt, cells)]
        if len(head) > len(row):
            first, last = cells[0], cells[-1]
            row.append("–" if first is None or last is None else f"{last - first:+.4g}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _save(fig, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.subplots(*args, **kwargs)


def plot_tofu(variants: dict[str, dict], path: Path) -> Path:
    """One panel per split (in TOFU's order), bars per metric with their values, one colour per variant."""
    splits = sorted({s for v in variants.values() for s in v["splits"]}, key=_rank)
    plt, (fig, axes) = _figure(1, len(splits), figsize=(3.6 * len(splits), 3.6), squeeze=False)
    width = 0.8 / len(variants)
    for ax, split in zip(axes[0], splits):
        for k, (name, summary) in enumerate(variants.items()):
            values = [summary["splits"].get(split, {}).get(m, 0.0) for m in SPLIT_METRICS]
            bars = ax.bar([i + k * width for i in range(3)], values, width, label=name, color=f"C{k}")
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        ax.set_xticks([i + width * (len(variants) - 1) / 2 for i in range(3)], ["ROUGE-L", "Prob.", "Truth ratio"])
        ax.set_ylim(0, 1.08)
        ax.set_title(split.replace("_", " "))
    axes[0][0].set_ylabel("score")
    axes[0][-1].legend(loc="upper right", fontsize=8)
    utility = ", ".join(f"{n} {v['model_utility']:.3f}" for n, v in variants.items() if "model_utility" in v)
    fig.suptitle("TOFU per split" + (f" — model utility: {utility}" if utility else ""), y=1.02)
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path


def plot_qa(variants: dict[str, dict], path: Path, title: str | None = None) -> Path:
    """Bars of the answer NLL and (when generated) ROUGE-L recall per variant; `title` names the model."""
    keys = [k for k in ("nll", "rouge_l_recall", "rouge_l_f1") if all(k in v for v in variants.values())]
    names = list(variants)
    width = max(3.4, 0.75 * len(names) + 1.0)  # room for every variant's label side by side
    plt, (fig, axes) = _figure(1, len(keys), figsize=(width * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys):
        bars = ax.bar(range(len(names)), [variants[n][key] for n in names],
                      color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
        ax.set_title({"nll": "answer NLL (lower is better)", "rouge_l_recall": "ROUGE-L recall",
                      "rouge_l_f1": "ROUGE-L F1"}[key], fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    path = _save(fig, path)
    plt.close(fig)
    return path


def plot_ifeval(variants: dict[str, dict], path: Path) -> Path:
    """Per instruction type, the fraction of instructions followed (strict and loose), one bar per variant."""
    kinds = sorted({k for v in variants.values() for k in v["per_instruction_type"]}, reverse=True)
    height = max(4.0, 0.28 * len(kinds) * max(1, len(variants)) + 1.2)
    plt, (fig, axes) = _figure(1, 2, figsize=(13, height), sharey=True)
    width = 0.8 / len(variants)
    for ax, level in zip(axes, ("strict", "loose")):
        for k, (name, summary) in enumerate(variants.items()):
            types = summary["per_instruction_type"]
            ax.barh([i + k * width for i in range(len(kinds))], [types.get(t, {}).get(level, 0.0) for t in kinds],
                    width, label=f"{name}: prompt-level strict {summary['prompt_level_strict_acc']:.3f}, "
                                 f"loose {summary['prompt_level_loose_acc']:.3f}", color=f"C{k}")
        ax.set_xlim(0, 1)
        ax.set_title(f"instructions followed, {level}", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(variants), fontsize=8, bbox_to_anchor=(0.5, -0.04))
    counts = next(iter(variants.values()))["per_instruction_type"]
    axes[0].set_yticks([i + width * (len(variants) - 1) / 2 for i in range(len(kinds))],
                       [f"{t} ({counts[t]['n']})" if t in counts else t for t in kinds], fontsize=7)
    fig.suptitle("IFEval per instruction type (n instructions)", fontsize=11)
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path


def _type_table(variants: dict[str, dict]) -> str:
    names = list(variants)
    kinds = sorted({k for v in variants.values() for k in v["per_instruction_type"]})
    head = ["instruction type", "n", *(f"{n} {level}" for n in names for level in ("strict", "loose"))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind in kinds:
        entries = [variants[n]["per_instruction_type"].get(kind) for n in names]
        count = next(e["n"] for e in entries if e)
        cells = [_fmt(e[level]) if e else "–" for e in entries for level in ("strict", "loose")]
        lines.append("| " + " | ".join([kind, str(count), *cells]) + " |")
    return "\n".join(lines)


def paired_table(outcomes: dict[str, list[dict]]) -> str:
    """IFEval prompt-level loose: every column after the first against the first, paired by prompt key."""
    names = list(outcomes)
    first = {r["key"]: r for r in outcomes[names[0]]}
    head = ["A", "B", "n", "acc A", "acc B", "B − A", "SE", "only A", "only B", "McNemar p"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for name in names[1:]:
        other = {r["key"]: r for r in outcomes[name]}
        if set(other) != set(first) or any(other[k]["prompt"] != first[k]["prompt"] for k in first):
            notes.append(f"{name} is not paired with {names[0]}: they answered different prompts "
                         f"({len(other)} and {len(first)}); run both on the same file and --limit")
            continue
        keys = sorted(first, key=str)
        r = paired_comparison([first[k][PAIRED_OUTCOME] for k in keys], [other[k][PAIRED_OUTCOME] for k in keys])
        lines.append("| " + " | ".join([names[0], name, str(r["n"]), f"{r['accuracy_a']:.3f}",
                                        f"{r['accuracy_b']:.3f}", f"{r['difference']:+.3f}", f"{r['se']:.3f}",
                                        str(r["only_a"]), str(r["only_b"]), f"{r['p_mcnemar']:.3g}"]) + " |")
    return "\n".join(lines if len(lines) > 2 else []) + "".join(f"\n\n{note}" for note in notes)


def _ifeval_outcomes(run_dir: Path, variants: dict[str, Any], prefix: str = "") -> dict[str, list[dict]]:
    found = {name: read_responses(run_dir / name) for name in variants}
    return {f"{prefix}{name}": records for name, records in found.items() if records}


def plot_shift(example: dict[str, Any], path: Path) -> Path:
    """Heatmaps of the two pairs' shifts (likely tokens × aligned positions) and the per-position Pearson r."""
    import numpy as np

    a, b = np.array(example["a"]), np.array(example["b"])
    bound = float(max(abs(a).max(), abs(b).max(), 1e-6))
    plt, (fig, axes) = _figure(3, 1, figsize=(max(6.0, 0.35 * a.shape[1] + 2), 8.5), sharex=True,
                               gridspec_kw={"height_ratios": [4, 4, 1.6]})
    for ax, values, name in zip(axes, (a, b), example["names"]):
        image = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-bound, vmax=bound)
        ax.set_yticks(range(len(example["tokens"])), [repr(t)[1:-1] for t in example["tokens"]], fontsize=7)
        ax.set_title(f"logit shift of {name}", fontsize=10)
        fig.colorbar(image, ax=ax, fraction=0.025, pad=0.01)
    axes[2].plot(example["pearson"], marker="o", markersize=3)
    axes[2].axhline(0, color="grey", linewidth=0.5)
    axes[2].set_ylabel("Pearson r")
    axes[2].set_xlabel("aligned position in the first text")
    path = _save(fig, path)
    plt.close(fig)
    return path


def render_report(out_dir: str | Path) -> Path:
    """Write report.md and the suite's PNGs next to `results.json`; return the report's path."""
    out = Path(out_dir)
    results = json.loads((out / RESULTS).read_text(encoding="utf-8"))
    suite, variants = results["suite"], results["variants"]
    lines = [f"# crossmodel eval: {suite}", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | `{v}` |" for k, v in sorted(results["config"].items()) if v not in (None, [], {})]
    if results.get("alpha_source"):  # the α the steered variant used, and where it came from
        lines.append(f"| α used | `{', '.join(f'{a:g}' for a in results['alphas'])}` ({results['alpha_source']}) |")
    lines += ["", "## Results", "", markdown_table(summary_columns(variants)), ""]
    if suite == "ifeval":
        lines += ["## Per instruction type (fraction followed)", "", _type_table(variants), "",
                  f"![IFEval per instruction type]({plot_ifeval(variants, out / 'ifeval_types.png').name})"]
        outcomes = _ifeval_outcomes(out, variants)
        if len(outcomes) > 1:
            lines += ["", *PAIRED_HEADING, paired_table(outcomes)]
    elif suite == "tofu":
        lines.append(f"![TOFU per split]({plot_tofu(variants, out / 'tofu_splits.png').name})")
    elif suite in ("qa", "nll"):
        lines.append(f"![answer NLL and ROUGE]({plot_qa(variants, out / 'qa.png').name})")
    elif suite == "shift":
        lines.append(f"![logit shift heatmap]({plot_shift(results['example'], out / 'shift_heatmap.png').name})")
    path = out / REPORT
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path


def compare_runs(dirs: list[str | Path]) -> str:
    """One markdown table with a column per run and variant ("DIR:variant"), rows = metrics; for IFEval runs
    over the same prompts, a paired comparison of every column against the first."""
    columns: dict[str, dict[str, float]] = {}
    outcomes: dict[str, list[dict]] = {}
    for d in dirs:
        path = Path(d) / RESULTS
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {d} is not a finished `crossmodel eval` output folder")
        results = json.loads(path.read_text(encoding="utf-8"))
        columns.update(summary_columns(results["variants"], prefix=f"{Path(d).name}:"))
        if results["suite"] == "ifeval":
            outcomes.update(_ifeval_outcomes(Path(d), results["variants"], prefix=f"{Path(d).name}:"))
    table = markdown_table(columns, delta=False)
    if len(outcomes) > 1:
        table += "\n\n" + "\n".join([*PAIRED_HEADING, paired_table(outcomes)])
    return table
