"""Cross-vocabulary sync on a long prompt: incremental re-encode + cache crop vs the reference's full re-encode.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/steer_long_prompt.py [--prompt-tokens 1000] [--new-tokens 64]

Gemma-3-270m (user) steered by a ~10M delta in SmolLM2-135M-Instruct's vocabulary through a `normalized` token
map, greedy, one prompt of about `--prompt-tokens` Gemma tokens. The full re-encode runs the delta over the whole
text at every step (quadratic in the text length); the incremental path feeds only the new suffix (linear), so
the gap grows with the prompt; the delta transplanted into Gemma's vocabulary (factored layout) needs no sync.
Rows as in steer_overhead.py (ms per generated token, EOS ignored).
"""

from __future__ import annotations

import argparse

import torch

from crossmodel.models import load_model
from crossmodel.steer import DeltaModel, steer
from crossmodel.steer.transplant import transplant
from crossmodel.vocab import TokenMap
from steer_overhead import PROMPTS, best_time, plain_fn, steered_fn


def long_prompt(tokenizer, tokens: int) -> str:
    """Real English text (the benchmark prompts, repeated) cut to about `tokens` tokens of `tokenizer`."""
    text = " ".join(PROMPTS)
    while len(tokenizer(text)["input_ids"]) < tokens:
        text = text + " " + text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:tokens]
    return tokenizer.decode(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt-tokens", type=int, default=1000)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    n = args.new_tokens
    smol, gemma = load_model("smollm2-135m-instruct"), load_model("gemma-3-270m")
    delta = DeltaModel.create(vocabulary_of=smol, layers=4, d_model=160, heads=4, init_from="template", seed=0)
    token_map = TokenMap.build(gemma.tokenizer, smol.tokenizer, mode="normalized",
                               user_rows=gemma.model.get_output_embeddings().weight.shape[0], delta_rows=delta.rows)
    prompt = [long_prompt(gemma.tokenizer, args.prompt_tokens)]
    cross = steer(gemma, deltas=[(delta, 1.0, token_map)])
    full = steer(gemma, deltas=[(delta, 1.0, token_map)], sync="full")
    prompt_len = cross.encode(prompt)["input_ids"].shape[1]
    print(f"greedy, {n} new tokens, prompt {prompt_len} Gemma tokens, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| run | ms/token | ratio |\n|---|---|---|")
    plain, _ = best_time(plain_fn(gemma, cross, prompt, n), 1)
    print(f"| Gemma-3-270m plain generate | {plain * 1e3:.1f} | 1.00x |", flush=True)
    inc, _ = best_time(steered_fn(cross, prompt, n), 1)
    print(f"| + SmolLM2-vocab delta, incremental | {inc * 1e3:.1f} | {inc / plain:.2f}x plain |", flush=True)
    ref, _ = best_time(steered_fn(full, prompt, n), 1)
    print(f"| + SmolLM2-vocab delta, full re-encode | {ref * 1e3:.1f} | {ref / plain:.2f}x plain, "
          f"{ref / inc:.1f}x incremental |", flush=True)
    moved, _ = transplant(delta, gemma)  # factored: no sync at all
    moved_s, _ = best_time(steered_fn(steer(gemma, deltas=[(moved, 1.0, None)]), prompt, n), 1)
    print(f"| + delta transplanted to Gemma's vocab (factored) | {moved_s * 1e3:.1f} | {moved_s / plain:.2f}x plain, "
          f"{moved_s / inc:.2f}x incremental |", flush=True)


if __name__ == "__main__":
    main()
