"""Knowledge transfer on real TOFU data (the analogue of CMC's Table 1), results in docs/RESULTS.md.

One knowledge delta is trained (SFT) next to the template SmolLM2-135M-Instruct on a TOFU subset (default: the
40 questions of the two `forget01` authors) and applied to every user model (token maps built on the fly for
other vocabularies) at several strengths α. Next to it, per user model: the plain model, the delta transplanted
into the user's vocabulary (issue 8, 40 alignment steps, factored and dense layouts), and the upper bound — the
user model fine-tuned directly on the same 40 examples (LoRA on every linear layer, merged). Columns: ROUGE-L
recall of the greedy answer on the trained questions and on their paraphrased questions, and the reference
answer's probability exp(−NLL). Every stage is stored in --out and skipped on a re-run, so the script can be
stopped and restarted.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/replicate_transfer.py --out runs/transfer        # all stages
    .venv/bin/python benchmarks/replicate_transfer.py --out runs/transfer --report                   # table only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from crossmodel.models import PLAIN_CHAT_TEMPLATE, load_model, slug
from crossmodel.steer import DeltaModel, token_map_for
from crossmodel.train import TrainConfig, train_or_reuse
from crossmodel.train.distill import DistillConfig
from crossmodel.train.transplant_job import run_transplant

from replication import (TOFU, cached, delta_key, evaluate_qa, finetune, finish, load_finetuned, log, machine,
                         qa_items, tofu_records, write_jsonl)

MODELS = ("smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/replicate-transfer")
    p.add_argument("--data", type=Path, default=TOFU, help="folder with TOFU's JSON files")
    p.add_argument("--split", default="forget01", help="TOFU file whose questions are learned (perturbed variant)")
    p.add_argument("--template", default="smollm2-135m-instruct")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--alphas", default="1.0,0.5,1.5")
    p.add_argument("--transplant", default="gemma-3-270m,qwen2.5-coder-0.5b-instruct,qwen2.5-coder-1.5b-instruct",
                   help="models that also get a transplanted-delta row")
    p.add_argument("--transplant-steps", type=int, default=40, help="alignment (distillation) steps")
    p.add_argument("--transplant-layouts", default="factored,dense", help="transplant layouts to measure")
    p.add_argument("--transplant-target", default="weighted_sum",
                   help="alignment target: weighted_sum (DistillConfig default) or max (the runtime map's reduce)")
    p.add_argument("--no-finetune", action="store_true", help="skip the direct fine-tuning upper bound")
    p.add_argument("--delta-epochs", type=int, default=40)
    p.add_argument("--delta-lr", type=float, default=2e-3)
    p.add_argument("--delta-layers", type=int, default=4)
    p.add_argument("--ft-epochs", type=int, default=8)
    p.add_argument("--ft-lr", type=float, default=1e-3)
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=72)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--limit", type=int, default=None, help="first N questions only (smoke runs)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--report", action="store_true", help="only print the table of the finished stages")
    return p.parse_args()


def train_knowledge_delta(args: argparse.Namespace, out: Path, train_file: Path) -> DeltaModel:
    """The SFT delta next to the template, in the demo's plain QA format."""
    template = load_model(args.template)
    template.tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    cfg = TrainConfig(template=args.template, out=str(out / "knowledge"), data=str(train_file),
                      epochs=args.delta_epochs, lr=args.delta_lr, delta_layers=args.delta_layers, delta_d_model=256,
                      delta_heads=4, batch_size=4, max_length=256, save_every=20, seed=0, progress=False)
    return train_or_reuse(cfg, template)


def run_model(args: argparse.Namespace, out: Path, spec: str, delta: DeltaModel, train_file: Path,
              parts: dict) -> None:
    """Every row of one user model (each stored as results/<model>/<row>.json once done)."""
    where = out / "results" / slug(spec)
    user = load_model(spec)
    token_map, key = token_map_for(user, delta), delta_key(delta)

    def row(name: str, deltas: list) -> None:
        def compute() -> dict:
            start = time.time()
            folder = where / "eval" / (f"{name}-{key}" if deltas else name)
            summary = evaluate_qa(user, deltas, parts, folder, args.max_new_tokens, args.batch_size)
            log(f"  {spec} {name}: " + ", ".join(f"{p} ROUGE-L {s['rouge_l_recall']:.3f}" for p, s in summary.items()))
            return {"parts": summary, "wall_s": time.time() - start}
        cached(where / f"{name}.json", compute, key if deltas else None)

    row("vanilla", [])
    for alpha in (float(a) for a in args.alphas.split(",") if a):
        row(f"delta a={alpha:g}", [(delta, alpha, token_map)])
    transplanted = spec in args.transplant.split(",") and token_map is not None
    target, steps = args.transplant_target, args.transplant_steps
    for layout in args.transplant_layouts.split(",") if transplanted else ():
        moved = out / "transplant" / f"{slug(spec)}-{key}-{layout}-{target}-{steps}steps"
        if not (moved / "crossmodel.json").is_file():
            start = time.time()
            cfg = DistillConfig(steps=steps, target_reduce=target)
            _, summary = run_transplant(delta.path, user, moved, layout=layout, distill_data=train_file, cfg=cfg)
            cached(where / f"transplant_build_{layout}_{target}_{steps}steps.json",
                   lambda: {"summary": summary, "wall_s": time.time() - start}, key)
        row(f"transplanted delta, {layout} ({steps} steps, {target} target) a=1", [(DeltaModel.load(moved), 1.0, None)])
    if args.no_finetune:
        return
    tuned = out / "finetuned" / slug(spec)
    log_file = tuned / "finetune.json"
    if not log_file.is_file():
        cached(log_file, lambda: finetune(user, train_file, tuned, method="lora", epochs=args.ft_epochs,
                                          lr=args.ft_lr, lora_rank=args.lora_rank))
    else:
        done = json.loads(log_file.read_text())
        wanted = {"epochs": args.ft_epochs, "lr": args.ft_lr, "lora_rank": args.lora_rank}
        if any(done[k] != v for k, v in wanted.items()):
            raise SystemExit(f"{log_file}: {spec} was fine-tuned with "
                             f"{ {k: done[k] for k in wanted} }, not {wanted}; use another --out or remove {tuned}")
        user = load_finetuned(tuned, f"{spec} (LoRA)")
    row("direct fine-tune (LoRA)", [])


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def report(args: argparse.Namespace, out: Path) -> str:
    """The markdown table of every finished row, with each delta row's share of the direct fine-tune's gain."""
    lines = ["| model | row | ROUGE-L questions | ROUGE-L paraphrased | ROUGE-L F1 questions | probability | "
             "share of fine-tune gain (questions / paraphrased) | eval s |", "|---|---|---|---|---|---|---|---|"]
    for spec in args.models.split(","):
        where = out / "results" / slug(spec)
        rows = {p.stem: json.loads(p.read_text()) for p in sorted(where.glob("*.json"))
                if not p.stem.startswith("transplant_build")}
        if not rows:
            continue
        base, top = rows.get("vanilla"), rows.get("direct fine-tune (LoRA)")
        order = ["vanilla"] + sorted(r for r in rows if r.startswith("delta")) + \
            sorted(r for r in rows if r.startswith("transplanted")) + ["direct fine-tune (LoRA)"]
        for name in (r for r in order if r in rows):
            parts = rows[name]["parts"]
            share = "–"
            if base and top and name not in ("vanilla", "direct fine-tune (LoRA)"):
                shares = []
                for part in ("questions", "paraphrased"):
                    gain = top["parts"][part]["rouge_l_recall"] - base["parts"][part]["rouge_l_recall"]
                    got = parts[part]["rouge_l_recall"] - base["parts"][part]["rouge_l_recall"]
                    shares.append(f"{100 * got / gain:.0f}%" if gain > 0 else "n/a")
                share = " / ".join(shares)
            label = name
            tuned = out / "finetuned" / slug(spec) / "finetune.json"
            if name.startswith("direct") and tuned.is_file():
                ft = json.loads(tuned.read_text())
                label = f"direct fine-tune (LoRA r={ft['lora_rank']}, {ft['epochs']} epochs, {ft['wall_s']:.0f} s)"
            lines.append(f"| {spec} | {label} | {_fmt(parts['questions']['rouge_l_recall'])} | "
                         f"{_fmt(parts['paraphrased']['rouge_l_recall'])} | {_fmt(parts['questions']['rouge_l_f1'])} | "
                         f"{_fmt(parts['questions']['probability'])} "
                         f"| {share} | {rows[name]['wall_s']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    args = _args()
    out = Path(args.out)
    if args.report:
        print(report(args, out))
        return
    torch.set_num_threads(args.threads)
    records = tofu_records(args.data, f"{args.split}_perturbed")[: args.limit]
    train_file = write_jsonl([{"question": r["question"], "answer": r["answer"]} for r in records],
                             out / "train.jsonl")
    parts = {"questions": qa_items(records), "paraphrased": qa_items(records, "paraphrased_question")}
    log(f"{machine()}; {len(records)} questions of {args.split}")
    start = time.time()
    delta = train_knowledge_delta(args, out, train_file)
    log(f"knowledge delta: {delta.config.metrics} ({time.time() - start:.0f} s)")
    for spec in args.models.split(","):
        run_model(args, out, spec, delta, train_file, parts)
    finish(out, report(args, out), start)


if __name__ == "__main__":
    main()
