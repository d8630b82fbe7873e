"""Unlearning transfer on real TOFU data (the analogue of CMC's Table 2) and the logit-shift similarity of two
fine-tuned pairs (the paper's motivating figure); results in docs/RESULTS.md.

1. Fine-tune SmolLM2-135M-Instruct (all weights) and Gemma-3-270m (LoRA, merged) on four TOFU authors (80
   questions: `forget05`'s last four, i.e. the two `forget01` authors and the two before them) until they know them.
2. Train one `grad_diff` delta against the *fine-tuned* SmolLM2 to forget the two `forget01` authors while
   keeping the other two.
3. Apply that one delta to both fine-tuned models (to Gemma through a token map built on the fly) and run the
   TOFU suite before and after: forget (the `forget01` authors), retain (the two kept, fine-tuned authors), real
   authors, world facts; model utility; forget quality against models fine-tuned on the two kept authors only.
4. Logit shift: (SmolLM2 → fine-tuned SmolLM2) vs (Gemma → fine-tuned Gemma) on the trained texts, with a heatmap.

Every stage is stored in --out and skipped on a re-run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replicate_unlearning.py --out runs/unlearning
    .venv/bin/python benchmarks/replicate_unlearning.py --out runs/unlearning --report
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from crossmodel.eval.answerers import QuestionAnswerer
from crossmodel.eval.logit_shift import ShiftPair, compare_shifts, model_logprobs
from crossmodel.eval.report import plot_shift
from crossmodel.eval.tofu import run_tofu
from crossmodel.io import atomic_write_json
from crossmodel.models import PLAIN_CHAT_TEMPLATE, load_model, slug
from crossmodel.steer import DeltaModel, steer, token_map_for
from crossmodel.train import TrainConfig, train_or_reuse
from crossmodel.vocab import TokenMap

from replication import (TOFU, cached, delta_key, finetune, finish, load_finetuned, log, machine, tofu_records,
                         write_jsonl)

TEMPLATE, OTHER = "smollm2-135m-instruct", "gemma-3-270m"
METHOD = {TEMPLATE: "full", OTHER: "lora"}
SPLITS = ("forget", "retain", "real_authors", "world_facts")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/replicate-unlearning")
    p.add_argument("--data", type=Path, default=TOFU, help="folder with TOFU's JSON files")
    p.add_argument("--ft-epochs", type=int, default=8)
    p.add_argument("--ft-lr-full", type=float, default=1e-4)
    p.add_argument("--ft-lr-lora", type=float, default=1e-3)
    p.add_argument("--unlearn-epochs", type=int, default=5)
    p.add_argument("--unlearn-lr", type=float, default=1e-3)
    p.add_argument("--delta-layers", type=int, default=4)
    p.add_argument("--limit", type=int, default=40, help="questions per TOFU split")
    p.add_argument("--max-new-tokens", type=int, default=72)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--shift-texts", type=int, default=8)
    p.add_argument("--no-reference", action="store_true", help="skip the retain-only models (forget quality)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report", action="store_true", help="only print the tables of the finished stages")
    return p.parse_args()


def write_data(args: argparse.Namespace, out: Path) -> dict[str, Path]:
    """Training files (question/answer) and TOFU evaluation files (perturbed format) of the four authors."""
    four = tofu_records(args.data, "forget05_perturbed")[120:200]  # 20 questions per author, in author order
    forget, retain = four[40:], four[:40]
    first = tofu_records(args.data, "forget01_perturbed")
    if [r["question"] for r in forget] != [r["question"] for r in first]:
        raise ValueError(f"{args.data}: forget05's last 40 records are not forget01's; is this TOFU's data?")
    plain = lambda rows: [{"question": r["question"], "answer": r["answer"]} for r in rows]  # noqa: E731
    return {"train": write_jsonl(plain(four), out / "data" / "train.jsonl"),
            "forget_train": write_jsonl(plain(forget), out / "data" / "forget.jsonl"),
            "retain_train": write_jsonl(plain(retain), out / "data" / "retain.jsonl"),
            "forget": write_jsonl(forget, out / "data" / "forget_perturbed.jsonl"),
            "retain": write_jsonl(retain, out / "data" / "retain_perturbed.jsonl"),
            "real_authors": args.data / "real_authors_perturbed.json",
            "world_facts": args.data / "world_facts_perturbed.json"}


def tuned_model(args: argparse.Namespace, out: Path, spec: str, data: Path, tag: str):
    """`spec` fine-tuned on `data` (stored under out/finetuned/<tag>/<model>; reloaded when there)."""
    where = out / "finetuned" / tag / slug(spec)
    if (where / "finetune.json").is_file():
        return load_finetuned(where, f"{spec} ({tag})")
    loaded = load_model(spec)
    method = METHOD[spec]
    lr = args.ft_lr_full if method == "full" else args.ft_lr_lora
    cached(where / "finetune.json", lambda: finetune(loaded, data, where, method=method, epochs=args.ft_epochs, lr=lr))
    loaded.name, loaded.path = f"{spec} ({tag})", where
    return loaded


def unlearning_delta(args: argparse.Namespace, out: Path, template, files: dict[str, Path]) -> DeltaModel:
    """The grad_diff delta next to the fine-tuned template."""
    template.tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    cfg = TrainConfig(template=str(template.path), out=str(out / "unlearn"), data=str(files["forget_train"]),
                      retain=str(files["retain_train"]), task="grad_diff", epochs=args.unlearn_epochs,
                      lr=args.unlearn_lr, delta_layers=args.delta_layers, delta_d_model=256, delta_heads=4,
                      batch_size=4, max_length=256, save_every=20, seed=0, progress=False)
    return train_or_reuse(cfg, template)


def tofu_row(args: argparse.Namespace, out: Path, name: str, user, deltas: list, files: dict[str, Path],
             splits=SPLITS) -> dict:
    """The TOFU suite on `user` steered by `deltas`, stored as results/<name>.json (keyed on the deltas'
    settings, so another unlearning run is evaluated again); the per-item records stay in row["eval_dir"]."""
    key = "-".join(delta_key(d) for d, _, _ in deltas) or None
    folder = out / "eval" / (f"{name}-{key}" if key else name)

    def compute() -> dict:
        start = time.time()
        summary = run_tofu(QuestionAnswerer(steer(user, deltas=deltas), args.batch_size),
                           {s: files[s] for s in splits}, folder, chat=False,
                           max_new_tokens=args.max_new_tokens, limit=args.limit, batch_size=args.batch_size)
        log(f"  {name}: " + ", ".join(f"{s} ROUGE-L {v['rouge_l_recall']:.3f}" for s, v in summary["splits"].items()))
        return {**summary, "wall_s": time.time() - start, "eval_dir": str(folder)}
    row = cached(out / "results" / f"{name}.json", compute, key)
    row.setdefault("eval_dir", str(folder))  # rows written before the field existed
    return row


def logit_shift(args: argparse.Namespace, out: Path, files: dict[str, Path], tuned: dict) -> dict:
    """Shift similarity of (SmolLM2 → tuned) vs (Gemma → tuned) on the trained texts, plus the heatmap."""
    def compute() -> dict:
        pairs = []
        for spec in (TEMPLATE, OTHER):
            before = load_model(spec)
            pairs.append(ShiftPair(f"{spec} → fine-tuned", before.tokenizer, model_logprobs(before.model),
                                   model_logprobs(tuned[spec].model)))
        a, b = pairs[0].tokenizer, pairs[1].tokenizer
        token_map = TokenMap.build(a, b, mode="normalized", user_rows=tuned[TEMPLATE].model.config.vocab_size,
                                   delta_rows=tuned[OTHER].model.get_output_embeddings().weight.shape[0])
        rows = [json.loads(line) for line in files["train"].read_text().splitlines()][:: 80 // args.shift_texts]
        texts = [f"{r['question']}\n{r['answer']}" for r in rows][: args.shift_texts]
        done = compare_shifts(pairs[0], pairs[1], texts, token_map=token_map, progress=False)
        plot_shift(done["example"], out / "shift_heatmap.png")
        return {"summary": done["summary"], "example": done["example"]}
    return cached(out / "results" / "logit_shift.json", compute)


def add_forget_quality(path: Path, row: dict, reference: dict) -> None:
    """Add the KS-test forget quality against `reference` (both rows' stored forget records) to the row at `path`."""
    from crossmodel.eval import metrics
    from crossmodel.eval.tofu import forget_ratios

    if "forget_quality" in row:
        return
    mine, ref = (json.loads((Path(r["eval_dir"]) / "tofu_forget.json").read_text()) for r in (row, reference))
    row.update(metrics.ks_forget_quality(forget_ratios(mine), forget_ratios(ref)))
    atomic_write_json(path, row)


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else "–"


def report(out: Path) -> str:
    """The TOFU table of every finished row, and the logit-shift summary."""
    lines = ["| model | variant | forget ROUGE-L | forget prob. | forget truth ratio | forget quality (KS p) | "
             "retain ROUGE-L | retain prob. | real authors ROUGE-L | world facts ROUGE-L | model utility | eval s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((out / "results").glob("*.json"), key=lambda p: (p.stem.partition("__")[0], len(p.stem))):
        if path.stem == "logit_shift":
            continue
        r = json.loads(path.read_text())
        s = r["splits"]
        get = lambda split, m: s.get(split, {}).get(m)  # noqa: E731
        model, _, variant = path.stem.partition("__")
        lines.append(f"| {model} | {variant} | {_fmt(get('forget', 'rouge_l_recall'))} | "
                     f"{_fmt(get('forget', 'probability'))} | {_fmt(get('forget', 'truth_ratio'))} | "
                     f"{_fmt(r.get('forget_quality'))} | {_fmt(get('retain', 'rouge_l_recall'))} | "
                     f"{_fmt(get('retain', 'probability'))} | {_fmt(get('real_authors', 'rouge_l_recall'))} | "
                     f"{_fmt(get('world_facts', 'rouge_l_recall'))} | {_fmt(r.get('model_utility'))} | "
                     f"{r['wall_s']:.0f} |")
    shift = out / "results" / "logit_shift.json"
    if shift.is_file():
        s = json.loads(shift.read_text())["summary"]
        c = s["control"]
        lines += ["", "| logit shift (SmolLM2 pair vs Gemma pair) | cosine | Pearson | Pearson, likely tokens | "
                  "top-20 overlap | positions |", "|---|---|---|---|---|---|"]
        for name, v in (("aligned positions", s), ("control (B one position later)", c)):
            lines.append(f"| {name} | {v['cosine']:.3f} | {v['pearson']:.3f} | {v['pearson_likely']:.3f} | "
                         f"{v['topk_overlap']:.3f} | {s['positions'] if v is s else ''} |")
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
    log(f"{machine()}; data in {out / 'data'}")
    tuned = {spec: tuned_model(args, out, spec, files["train"], "four-authors") for spec in (TEMPLATE, OTHER)}
    log(f"fine-tuned both models ({time.time() - start:.0f} s)")
    delta = unlearning_delta(args, out, tuned[TEMPLATE], files)
    log(f"unlearning delta: {delta.config.metrics} ({time.time() - start:.0f} s)")
    rows = {}
    for spec in (TEMPLATE, OTHER):
        name = slug(spec)
        rows[name, "fine-tuned"] = tofu_row(args, out, f"{name}__fine-tuned", tuned[spec], [], files)
        rows[name, "fine-tuned + unlearning delta"] = tofu_row(
            args, out, f"{name}__fine-tuned + unlearning delta", tuned[spec],
            [(delta, 1.0, token_map_for(tuned[spec], delta))], files)
    logit_shift(args, out, files, tuned)
    log(f"logit shift done ({time.time() - start:.0f} s)")
    if not args.no_reference:  # forget quality: KS test against models that never saw the forget authors
        for spec in (TEMPLATE, OTHER):
            name = slug(spec)
            kept = tuned_model(args, out, spec, files["retain_train"], "kept-authors-only")
            reference = tofu_row(args, out, f"{name}__reference (kept authors only)", kept, [], files,
                                 splits=("forget",))
            for variant in ("fine-tuned", "fine-tuned + unlearning delta"):
                add_forget_quality(out / "results" / f"{name}__{variant}.json", rows[name, variant], reference)
    finish(out, report(out), start)


if __name__ == "__main__":
    main()
