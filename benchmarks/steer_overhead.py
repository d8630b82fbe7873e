"""Steering overhead, greedy decoding (issue 4 benchmark): plain `generate` vs steered, side by side.

    .venv/bin/python benchmarks/steer_overhead.py [--new-tokens 128] [--repeats 2]

Rows: SmolLM2-135M-Instruct plain vs steered by a ~10M delta in its own vocabulary (target <= 1.10x);
Gemma-3-270m plain vs steered by the same SmolLM2-vocabulary delta through a PM-MinED token map, with the
incremental re-encode + cache crop (target <= 1.25x) and with the reference's full re-encode without cache
(incremental should be >= 3x faster), and with the delta transplanted into Gemma's vocabulary (issue 8: factored,
i.e. source head + sparse map, and dense, i.e. one row per Gemma token like a delta native to that vocabulary);
steered SmolLM2 at batch 8 vs batch 1 in tokens/s (target >= 4x), next to plain `generate` at batch 8 (the
ceiling the same hardware gives without steering). `--only-batch` runs the
SmolLM2 batch rows alone.
EOS is ignored on both sides (min_new_tokens=n for `generate`), so every run generates exactly n tokens per row;
times are per generated token, best of `--repeats`.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from crossmodel.models import load_model
from crossmodel.steer import DeltaModel, steer
from crossmodel.vocab import TokenMap

PROMPTS = ["Write a short story about a lighthouse keeper who finds a message in a bottle.",
           "Explain how a refrigerator works, step by step.", "Describe your ideal weekend in detail.",
           "What are the main causes of the French Revolution?", "Give me a recipe for a vegetable soup.",
           "Why is the sky blue? Explain it to a ten-year-old.", "Compare cats and dogs as pets.",
           "Tell me about the history of the printing press."]


def best_time(fn, repeats: int) -> tuple[float, int]:
    """(seconds per generated token, tokens) of the fastest of `repeats` runs; fn() returns new-token ids."""
    best = (float("inf"), 0)
    for _ in range(repeats):
        start = time.perf_counter()
        ids = fn()
        elapsed = time.perf_counter() - start
        tokens = ids.numel()
        best = min(best, (elapsed / tokens, tokens))
    return best


def plain_fn(loaded, steered, prompts, n):
    inputs = steered.encode(prompts)

    def run():
        with torch.no_grad():
            out = loaded.model.generate(**inputs, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                        pad_token_id=steered.pad_id)
        return out[:, inputs["input_ids"].shape[1]:]
    return run


def steered_fn(steered, prompts, n):
    steered.eos_ids = []  # like min_new_tokens=n on the plain side: every run generates exactly n tokens
    return lambda: steered.generate_ids(prompts, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only-batch", action="store_true", help="only the SmolLM2 batch 1 / batch 8 rows")
    args = parser.parse_args()
    n, r = args.new_tokens, args.repeats
    smol = load_model("smollm2-135m-instruct")
    delta = DeltaModel.create(vocabulary_of=smol, layers=4, d_model=160, heads=4, init_from="template", seed=0)
    params = sum(p.numel() for p in delta.model.parameters()) / 1e6
    print(f"greedy, {n} new tokens, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, delta {params:.1f}M parameters")
    print(f"| {'run':<52} | {'ms/token':>8} | {'tokens/s':>8} | {'tokens':>6} | ratio |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 10}|{'-' * 8}|-------|", flush=True)

    def row(name: str, sec: float, tokens: int, ratio: str) -> None:
        print(f"| {name:<52} | {sec * 1e3:8.1f} | {1 / sec:8.1f} | {tokens:6d} | {ratio} |", flush=True)

    same = steer(smol, deltas=[(delta, 1.0, None)])
    p1 = PROMPTS[:1]
    t_plain, k_plain = best_time(plain_fn(smol, same, p1, n), r)
    row("SmolLM2-135M plain generate, batch 1", t_plain, k_plain, "1.00x")
    t_same, k_same = best_time(steered_fn(same, p1, n), r)
    row("SmolLM2-135M + delta (same vocab), batch 1", t_same, k_same, f"{t_same / t_plain:.2f}x plain")
    if not args.only_batch:
        cross_vocabulary_rows(delta, p1, n, r, row)
    p8, pk8 = best_time(plain_fn(smol, same, PROMPTS[:8], n), r)
    row("SmolLM2-135M plain generate, batch 8", p8, pk8, f"{t_plain / p8:.1f}x tokens/s of batch 1")
    b8, k8 = best_time(steered_fn(same, PROMPTS[:8], n), r)
    row("SmolLM2-135M + delta, batch 8", b8, k8,
        f"{t_same / b8:.1f}x tokens/s of batch 1, {b8 / p8:.2f}x plain batch 8")


def cross_vocabulary_rows(delta, p1, n, r, row) -> None:
    """Gemma-3-270m plain vs the SmolLM2-vocabulary delta: runtime-mapped (incremental and full re-encode) and
    transplanted into Gemma's vocabulary in both layouts (issue 8; no alignment, which does not change the
    speed)."""
    from crossmodel.steer.transplant import transplant

    gemma = load_model("gemma-3-270m")
    gemma_rows = gemma.model.get_output_embeddings().weight.shape[0]
    token_map = TokenMap.build(gemma.tokenizer, delta.tokenizer, user_rows=gemma_rows, delta_rows=delta.rows)
    cross = steer(gemma, deltas=[(delta, 1.0, token_map)])
    full = steer(gemma, deltas=[(delta, 1.0, token_map)], sync="full")
    g_plain, gk_plain = best_time(plain_fn(gemma, cross, p1, n), r)
    row("Gemma-3-270m plain generate, batch 1", g_plain, gk_plain, "1.00x")
    g_inc, gk_inc = best_time(steered_fn(cross, p1, n), r)
    row("Gemma-3-270m + SmolLM2-vocab delta, incremental", g_inc, gk_inc, f"{g_inc / g_plain:.2f}x plain")
    g_full, gk_full = best_time(steered_fn(full, p1, n), 1)
    row("Gemma-3-270m + SmolLM2-vocab delta, full re-encode", g_full, gk_full,
        f"{g_full / g_plain:.2f}x plain, {g_full / g_inc:.1f}x incremental")
    one_to_many = None  # transplant's own default map, built once for both layouts
    for layout in ("factored", "dense"):  # dense: one head row per Gemma token, a delta native to Gemma's vocab
        moved, one_to_many = transplant(delta, gemma, token_map=one_to_many, layout=layout)
        g_moved, gk_moved = best_time(steered_fn(steer(gemma, deltas=[(moved, 1.0, None)]), p1, n), r)
        row(f"Gemma-3-270m + delta transplanted to Gemma's vocab, {layout}", g_moved, gk_moved,
            f"{g_moved / g_plain:.2f}x plain, {g_moved / g_inc:.2f}x incremental")


if __name__ == "__main__":
    main()
