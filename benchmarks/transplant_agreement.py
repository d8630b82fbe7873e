"""Transplanted vs runtime-mapped delta on a real pair (docs/TRANSPLANT.md).

Agreement: the transplanted delta's logits against the original delta's logits mapped at runtime
(`token_map.gather`), at aligned positions of held-out text, on the rows the map defines — top-k overlap, Pearson
r and KL, before and after the alignment (distillation) step. Speed: steered greedy decoding of the user model
with the transplanted delta (same vocabulary: no re-encoding) vs the runtime-mapped delta (incremental re-encode
sync), next to the plain user model.

    .venv/bin/python benchmarks/transplant_agreement.py --delta RUN/delta --user gemma-3-270m \
        --train-data facts.jsonl --eval-data facts_heldout.jsonl --steps 100
"""

from __future__ import annotations

import argparse
import time

import torch

from crossmodel.models import load_model
from crossmodel.steer import DeltaModel, steer
from crossmodel.steer.transplant import provenance, transplant
from crossmodel.train.distill import DistillConfig, distill, load_texts, logit_agreement
from crossmodel.train.facts import generate_facts


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--delta", help="delta directory (default: a fresh DeltaModel in --delta-vocab's vocabulary)")
    p.add_argument("--delta-vocab", default="smollm2-135m-instruct", help="vocabulary of the fresh delta")
    p.add_argument("--user", default="gemma-3-270m")
    p.add_argument("--mode", default="one-to-many", help="map mode for both the transplant and the runtime path")
    p.add_argument("--train-data", help="TOFU-style JSON(L) to distil on (default: 8 generated authors, seed 0)")
    p.add_argument("--eval-data", help="held-out TOFU-style JSON(L) (default: 4 generated authors, seed 1)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--loss", default="mse")
    p.add_argument("--trainable", default="all")
    p.add_argument("--layout", default="factored", help="layout of the transplant that is aligned: factored | dense")
    p.add_argument("--target-reduce", default="weighted_sum",
                   help="DistillConfig.target_reduce: weighted_sum | map (the map's own reduce) | max | logsumexp")
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-timing", action="store_true", help="agreement only, skip the decoding timings")
    p.add_argument("--timing-only", action="store_true", help="skip the agreement and alignment")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per row, interleaved; the fastest is shown")
    return p.parse_args()


def _texts(path: str | None, n_authors: int, seed: int) -> list[str]:
    if path:
        return load_texts(path)
    return [r["question"] + "\n" + r["answer"] for r in generate_facts(n_authors, seed)]


def _row(name: str, scores: dict) -> str:
    return (f"| {name} | {scores['top1']:.3f} | {scores['top5']:.3f} | {scores['top10']:.3f} | "
            f"{scores['pearson']:.3f} | {scores['kl']:.3f} | {scores['positions']} |")


def _timed(steered, prompts: list[str], max_new_tokens: int) -> tuple[float, list[str]]:
    steered.generate(prompts[:1], max_new_tokens=2)  # warm-up
    start = time.perf_counter()
    out = steered.generate(prompts, max_new_tokens=max_new_tokens)
    return time.perf_counter() - start, out


def _agreement(args, source, moved, token_map, train: list[str], held_out: list[str]) -> None:
    before = logit_agreement(moved, source, token_map, held_out)
    cfg = DistillConfig(steps=args.steps, lr=args.lr, loss=args.loss, trainable=args.trainable,
                        target_reduce=None if args.target_reduce == "map" else args.target_reduce)
    start = time.perf_counter()
    result = distill(moved, source, token_map, train, cfg,
                     on_step=lambda step, loss: step % 20 or print(f"  step {step}: loss {loss:.4f}", flush=True))
    took = time.perf_counter() - start
    after = logit_agreement(moved, source, token_map, held_out)
    print(f"\ndistillation: {args.steps} steps, lr {args.lr}, loss {args.loss}, trainable {args.trainable}, "
          f"target reduce {args.target_reduce}: "
          f"{took:.0f} s, loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}\n")
    print("| held-out agreement vs runtime-mapped | top-1 | top-5 | top-10 | Pearson r | KL | positions |")
    print("|---|---|---|---|---|---|---|")
    print(_row("transplanted, before alignment", before))
    print(_row(f"transplanted, after {args.steps} steps", after))


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    user = load_model(args.user)
    if args.delta:
        source, kind = DeltaModel.load(args.delta), f"trained ({args.delta})"
    else:
        source, kind = DeltaModel.create(vocabulary_of=args.delta_vocab, layers=2, d_model=128, heads=4), "fresh"
    start = time.perf_counter()
    moved, token_map = transplant(source, user, mode=args.mode, layout=args.layout)
    built = time.perf_counter() - start
    train, held_out = _texts(args.train_data, 8, 0), _texts(args.eval_data, 4, 1)
    print(f"user {args.user} ({moved.rows} rows) <- delta {kind}, {source.rows} rows; map {args.mode}; "
          f"{args.layout} transplant {built:.1f} s; rows {provenance(moved.config)['rows']}")
    if not args.timing_only:
        _agreement(args, source, moved, token_map, train, held_out)
    if args.no_timing:
        return
    prompts = [t.split("\n")[0] for t in held_out[: args.prompts]]
    other = "dense" if args.layout == "factored" else "factored"
    runs = {"plain user model": steer(user, deltas=[]),
            "+ mapped delta (runtime map, incremental sync)": steer(user, deltas=[(source, 1.0, token_map)]),
            f"+ transplanted delta, {args.layout} (same vocabulary)": steer(user, deltas=[(moved, 1.0, None)]),
            f"+ transplanted delta, {other} (same vocabulary)": steer(user, deltas=[(transplant(
                source, user, token_map=token_map, layout=other)[0], 1.0, None)])}
    print(f"\n| greedy decoding, {len(prompts)} prompts x {args.max_new_tokens} new tokens, {args.threads} threads "
          "| seconds | tokens/s | vs plain |")
    print("|---|---|---|---|")
    best = {name: float("inf") for name in runs}
    for _ in range(args.repeats):  # interleaved, so a burst of load on the shared machine hits every row
        for name, steered in runs.items():
            best[name] = min(best[name], _timed(steered, prompts, args.max_new_tokens)[0])
    tokens = len(prompts) * args.max_new_tokens
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.2f} | {tokens / seconds:.1f} | {seconds / best['plain user model']:.2f}x |")


if __name__ == "__main__":
    main()
