"""Unlearning methods at TOFU scale (issue 16): a sweep on dev authors, the Pareto front, and each method's chosen
setting on the reported authors, for one delta applied to fine-tuned SmolLM2 and (another vocabulary) fine-tuned
Gemma-3; results in docs/RESULTS.md.

Authors (TOFU, 20 questions each, all from the shared copy):
- retain: the first --retain-authors authors of `retain_perturbed` (TOFU's retain evaluation set);
- dev forget: `forget05`'s authors 196–197 (only the sweep sees them);
- report forget: `forget01`'s authors 198–199 (the published forget01 split; no choice is made on them).
Both models are fine-tuned on all of them (the "fine-tuned" rows); the reference models, which never saw a forget
author, on the retain authors only (forget quality = KS test of the forget truth ratios against them).

1. Sweep (SmolLM2, dev forget): every method × learning rate → forget quality vs model utility (`pareto.png`).
2. Per method, the setting chosen on dev — the highest forget quality among those keeping model utility ≥ 0.9 ×
   the fine-tuned model's, else the highest utility — is trained again on the report forget authors and that one
   delta is applied to both fine-tuned models.

TOFU suite: --limit questions per split; the retain split is every k-th retain question, so that it spans all the
retain authors. Every stage is stored in --out and skipped on a re-run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/unlearning_methods.py --out runs/unlearning-methods
    .venv/bin/python benchmarks/unlearning_methods.py --out runs/unlearning-methods --report
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from crossmodel.models import PLAIN_CHAT_TEMPLATE, slug
from crossmodel.steer import token_map_for
from crossmodel.train import TrainConfig, train_or_reuse

from replicate_unlearning import OTHER, TEMPLATE, add_forget_quality, tofu_row, tuned_model
from replication import TOFU, finish, log, machine, tofu_records, write_jsonl

METHODS: dict[str, dict[str, Any]] = {  # name -> TrainConfig keys
    "grad_diff": {"task": "grad_diff"},
    "npo+KL": {"task": "npo", "retain_loss": "kl"},
    "npo+KL×2": {"task": "npo", "retain_loss": "kl", "retain_weight": 2.0},  # for the utility gap of npo+KL
    "simnpo+KL": {"task": "simnpo", "retain_loss": "kl"},
    "undial+KL": {"task": "undial", "retain_loss": "kl"},
    "idk+KL": {"task": "idk", "retain_loss": "kl"},
    # the demo's setting: retain CE ×2, the delta also fits refusals and retain answers alone (docs/TRAINING.md)
    "idk+LM": {"task": "idk", "retain_weight": 2.0, "delta_lm_weight": 1.0},
}
SPLITS = ("forget", "retain", "real_authors", "world_facts")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/unlearning-methods")
    p.add_argument("--data", type=Path, default=TOFU, help="folder with TOFU's JSON files")
    p.add_argument("--retain-authors", type=int, default=10)
    p.add_argument("--ft-epochs", type=int, default=5)
    p.add_argument("--ft-lr-full", type=float, default=1e-4)
    p.add_argument("--ft-lr-lora", type=float, default=1e-3)
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {list(METHODS)}")
    p.add_argument("--lrs", default="1e-3,3e-3", help="unlearning learning rates swept on the dev authors")
    p.add_argument("--unlearn-epochs", type=int, default=5)
    p.add_argument("--delta-layers", type=int, default=4)
    p.add_argument("--limit", type=int, default=40, help="questions per TOFU split")
    p.add_argument("--max-new-tokens", type=int, default=72)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--sweep-only", action="store_true", help="stop after the dev sweep")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report", action="store_true", help="only print the tables of the finished stages")
    return p.parse_args()


def write_data(args: argparse.Namespace, out: Path) -> dict[str, Path]:
    """Training files (question/answer) and TOFU evaluation files (perturbed format) of every author group."""
    retain = tofu_records(args.data, "retain_perturbed")[: 20 * args.retain_authors]
    five = tofu_records(args.data, "forget05_perturbed")
    dev, report = five[120:160], five[160:200]
    if [r["question"] for r in report] != [r["question"] for r in tofu_records(args.data, "forget01_perturbed")]:
        raise ValueError(f"{args.data}: forget05's last 40 records are not forget01's; is this TOFU's data?")
    plain = lambda rows: [{"question": r["question"], "answer": r["answer"]} for r in rows]  # noqa: E731
    step = max(1, len(retain) // args.limit)
    d = out / "data"
    return {"train": write_jsonl(plain(retain + dev + report), d / "train.jsonl"),
            "retain_train": write_jsonl(plain(retain), d / "retain.jsonl"),
            "dev_train": write_jsonl(plain(dev), d / "dev_forget.jsonl"),
            "report_train": write_jsonl(plain(report), d / "report_forget.jsonl"),
            "retain": write_jsonl(retain[::step], d / "retain_perturbed.jsonl"),
            "dev": write_jsonl(dev, d / "dev_forget_perturbed.jsonl"),
            "report": write_jsonl(report, d / "report_forget_perturbed.jsonl"),
            "real_authors": args.data / "real_authors_perturbed.json",
            "world_facts": args.data / "world_facts_perturbed.json"}


def eval_files(files: dict[str, Path], forget: str) -> dict[str, Path]:
    """The TOFU suite's files with `forget` ("dev" or "report") as the forget split."""
    return {"forget": files[forget], "retain": files["retain"], "real_authors": files["real_authors"],
            "world_facts": files["world_facts"]}


def unlearning_delta(args: argparse.Namespace, out: Path, template, files: dict[str, Path], forget: str,
                     method: str, lr: float):
    """One unlearning delta next to the fine-tuned template (stored under out/deltas/<forget>/<method> lr=<lr>)."""
    template.tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    cfg = TrainConfig(template=str(template.path), out=str(out / "deltas" / forget / f"{method} lr={lr:g}"),
                      data=str(files[f"{forget}_train"]), retain=str(files["retain_train"]),
                      epochs=args.unlearn_epochs, lr=lr, delta_layers=args.delta_layers, delta_d_model=256,
                      delta_heads=4, batch_size=4, max_length=256, save_every=0, seed=0, progress=False,
                      **METHODS[method])
    return train_or_reuse(cfg, template, log=None)


def choose(rows: dict[float, dict], utility_floor: float) -> float:
    """The lr with the highest forget quality among rows keeping utility ≥ the floor, else the highest utility."""
    kept = [lr for lr, r in rows.items() if r["model_utility"] >= utility_floor]
    if kept:
        return max(kept, key=lambda lr: rows[lr]["forget_quality"])
    return max(rows, key=lambda lr: rows[lr]["model_utility"])


def plot_pareto(points: dict[str, list[tuple[float, float, float]]], fine_tuned: tuple[float, float],
                path: Path) -> None:
    """Forget quality (log) against model utility, one marker series per method, lr written by each point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method, pts in points.items():
        xs, ys = [p[0] for p in pts], [max(p[1], 1e-12) for p in pts]
        ax.plot(xs, ys, "o-", label=method)
        for x, y, lr in zip(xs, ys, (p[2] for p in pts)):
            ax.annotate(f"{lr:g}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.plot([fine_tuned[0]], [max(fine_tuned[1], 1e-12)], "k*", markersize=12, label="fine-tuned (no unlearning)")
    ax.axhline(0.05, color="grey", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("model utility (TOFU)")
    ax.set_ylabel("forget quality (KS p, log)")
    ax.set_title("Unlearning delta on fine-tuned SmolLM2, dev authors")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _row(out: Path, name: str) -> dict:
    return json.loads((out / "results" / f"{name}.json").read_text())


def report(out: Path) -> str:
    """The dev sweep and the report-author rows of every finished stage, as markdown tables."""
    head = ("| model | forget authors | variant | forget ROUGE-L | degenerate forget answers | forget prob. | "
            "forget truth ratio | forget quality (KS p) | retain ROUGE-L | model utility | eval s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for path in sorted((out / "results").glob("*.json")):
        r = json.loads(path.read_text())
        if "splits" not in r or "reference" in path.stem:
            continue
        model, forget, variant = path.stem.split("__")
        f, ret = r["splits"].get("forget", {}), r["splits"].get("retain", {})
        fmt = lambda x: f"{x:.3g}" if isinstance(x, float) else "–"  # noqa: E731
        lines.append(f"| {model} | {forget} | {variant} | {fmt(f.get('rouge_l_recall'))} | "
                     f"{fmt(f.get('degenerate_rate'))} | {fmt(f.get('probability'))} | {fmt(f.get('truth_ratio'))} | "
                     f"{fmt(r.get('forget_quality'))} | {fmt(ret.get('rouge_l_recall'))} | "
                     f"{fmt(r.get('model_utility'))} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    args = _args()
    out = Path(args.out)
    if args.report:
        print(report(out))
        return
    torch.set_num_threads(args.threads)
    start = time.time()
    files = write_data(args, out)
    log(f"{machine()}; data in {out / 'data'}; {args.retain_authors} retain authors")
    tag = f"{args.retain_authors + 4}-authors"
    tuned = {spec: tuned_model(args, out, spec, files["train"], tag) for spec in (TEMPLATE, OTHER)}
    kept = {spec: tuned_model(args, out, spec, files["retain_train"], "retain-authors-only")
            for spec in (TEMPLATE, OTHER)}
    log(f"fine-tuned and reference models ready ({time.time() - start:.0f} s)")

    def row(spec: str, forget: str, variant: str, deltas: list) -> dict:
        name = f"{slug(spec)}__{forget}__{variant}"
        r = tofu_row(args, out, name, tuned[spec], deltas, eval_files(files, forget))
        reference = tofu_row(args, out, f"{slug(spec)}__{forget}__reference", kept[spec], [],
                             eval_files(files, forget), splits=("forget",))
        add_forget_quality(out / "results" / f"{name}.json", r, reference)
        return r

    # 1. the sweep on the dev authors (SmolLM2 only)
    base = row(TEMPLATE, "dev", "fine-tuned", [])
    lrs = [float(x) for x in args.lrs.split(",")]
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    sweep: dict[str, dict[float, dict]] = {}
    for method in methods:
        for lr in lrs:
            delta = unlearning_delta(args, out, tuned[TEMPLATE], files, "dev", method, lr)
            sweep.setdefault(method, {})[lr] = row(TEMPLATE, "dev", f"{method} lr={lr:g}", [(delta, 1.0, None)])
            log(f"dev {method} lr={lr:g} done ({time.time() - start:.0f} s)")
    plot_pareto({m: [(r["model_utility"], r["forget_quality"], lr) for lr, r in rows.items()]
                 for m, rows in sweep.items()}, (base["model_utility"], base["forget_quality"]), out / "pareto.png")
    chosen = {m: choose(rows, 0.9 * base["model_utility"]) for m, rows in sweep.items()}
    log(f"chosen on dev: {chosen}")
    if not args.sweep_only:  # 2. the chosen settings on the report authors, both models
        for spec in (TEMPLATE, OTHER):
            row(spec, "report", "fine-tuned", [])
        for method, lr in chosen.items():
            delta = unlearning_delta(args, out, tuned[TEMPLATE], files, "report", method, lr)
            for spec in (TEMPLATE, OTHER):
                row(spec, "report", f"{method} lr={lr:g}", [(delta, 1.0, token_map_for(tuned[spec], delta))])
            log(f"report {method} lr={lr:g} done ({time.time() - start:.0f} s)")
    finish(out, report(out), start)


if __name__ == "__main__":
    main()
