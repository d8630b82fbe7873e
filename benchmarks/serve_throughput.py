"""Serving throughput (issue 17 benchmark): output tokens/s at 1, 8 and 32 concurrent requests.

    VLLM_CPU_KVCACHE_SPACE=2 python benchmarks/serve_throughput.py --delta runs/sft/delta [--new-tokens 64]

(run with the python of a venv that has the serve extra; see docs/SERVING.md). Rows, greedy, EOS ignored so that
every request generates exactly --new-tokens tokens:
- SmolLM2-135M-Instruct on vLLM: plain, and + the delta (its own vocabulary);
- Gemma-3-270m on vLLM: plain, and + the same delta through a normalized token map (another vocabulary);
- crossmodel's own loop (`steer(...).generate_ids`, HF + KV caches, one batch of N) for both steered pairs.
Concurrent requests are N requests submitted at once to `LLM.generate` (vLLM batches them as its server does);
one engine per model serves the plain and the steered rows. Goals: steered vLLM >= 0.8x plain vLLM at 32
concurrent requests, and >= 3x crossmodel's own loop at 8. Times: best of --repeats, after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crossmodel.models.prompt import chat_prompt

MODELS = {"smollm2-135m-instruct": "same vocabulary", "gemma-3-270m": "other vocabulary"}
QUESTIONS = ["Write a short story about a lighthouse keeper who finds a message in a bottle.",
             "Explain how a refrigerator works, step by step.", "Describe your ideal weekend in detail.",
             "What are the main causes of the French Revolution?", "Give me a recipe for a vegetable soup.",
             "Why is the sky blue? Explain it to a ten-year-old.", "Compare cats and dogs as pets.",
             "Tell me about the history of the printing press."]


def prompts(tokenizer, n: int) -> list[dict]:
    """n distinct prompts in the model's chat format (a base model: the plain Question/Answer format), as ids."""
    texts = [chat_prompt(tokenizer, f"(request {i}) {QUESTIONS[i % len(QUESTIONS)]}") for i in range(n)]
    return [{"prompt_token_ids": ids} for ids in tokenizer(texts, add_special_tokens=False).input_ids]


def engine_rows(model: str, delta: str, token_map: str | None, sizes: list[int], new_tokens: int,
                repeats: int) -> dict:
    """Runs in its own process (vLLM starts an engine): {"plain": {N: tok/s}, "steered": {N: tok/s}}."""
    from vllm import SamplingParams

    from crossmodel.models import load_tokenizer
    from crossmodel.serve import steered_llm

    llm = steered_llm(model, {"delta": delta}, {"delta": token_map} if token_map else None, dtype="float32",
                      enforce_eager=True, max_model_len=1024, max_num_seqs=max(sizes), seed=0)
    tokenizer, _ = load_tokenizer(model)
    out: dict = {"plain": {}, "steered": {}}
    for kind, extra in (("plain", None), ("steered", {"delta": "delta", "alpha": 1.0})):
        params = SamplingParams(temperature=0.0, max_tokens=new_tokens, ignore_eos=True, extra_args=extra)
        llm.generate(prompts(tokenizer, 2), params, use_tqdm=False)  # warm-up
        for n in sizes:
            batch, best = prompts(tokenizer, n), float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                results = llm.generate(batch, params, use_tqdm=False)
                best = min(best, time.perf_counter() - start)
                assert all(len(r.outputs[0].token_ids) == new_tokens for r in results)
            out[kind][n] = n * new_tokens / best
    return out


def own_loop(model: str, delta: str, token_map: str | None, sizes: list[int], new_tokens: int,
             repeats: int) -> dict[int, float]:
    """crossmodel's own steered loop, one batch of N prompts: tokens/s."""
    from crossmodel.models import load_model
    from crossmodel.steer import steer

    user = load_model(model)
    steered = steer(user, deltas=[(delta, 1.0, token_map)])
    steered.eos_ids = []  # every row generates exactly new_tokens tokens, as ignore_eos does in vLLM
    out = {}
    for n in sizes:
        questions = [f"(request {i}) {QUESTIONS[i % len(QUESTIONS)]}" for i in range(n)]
        steered.generate_ids(questions[:1], 2, chat=True)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            steered.generate_ids(questions, new_tokens, chat=True)
            best = min(best, time.perf_counter() - start)
        out[n] = n * new_tokens / best
    return out


def token_map_dir(delta: str, where: Path) -> str:
    """A normalized Gemma-3-270m -> delta token map, built once into `where`."""
    from crossmodel.models import load_model
    from crossmodel.steer import DeltaModel
    from crossmodel.vocab import TokenMap

    if not (where / "token_map.json").is_file():
        user, d = load_model("gemma-3-270m"), DeltaModel.load(delta)
        TokenMap.build(user.tokenizer, d.tokenizer, mode="normalized", user_rows=user.model.config.vocab_size,
                       delta_rows=d.rows).save(where)
    return str(where)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delta", required=True, help="a SmolLM2-vocabulary delta directory")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--own-loop-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--engine", help=argparse.SUPPRESS)  # internal: run one model's vLLM rows, print JSON
    parser.add_argument("--map", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        print("ROWS " + json.dumps(engine_rows(args.engine, args.delta, args.map, args.sizes, args.new_tokens,
                                               args.repeats)))
        return
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    maps = {"smollm2-135m-instruct": None,
            "gemma-3-270m": token_map_dir(args.delta, Path(tempfile.gettempdir()) / "serve_throughput_map")}
    table = []
    for model, vocab in MODELS.items():
        cmd = [sys.executable, __file__, "--engine", model, "--delta", args.delta, "--new-tokens",
               str(args.new_tokens), "--repeats", str(args.repeats), "--sizes", *map(str, args.sizes)]
        if maps[model]:
            cmd += ["--map", maps[model]]
        done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        line = [x for x in done.stdout.splitlines() if x.startswith("ROWS ")]
        if done.returncode or not line:
            sys.exit(f"the vLLM run for {model} failed:\n{done.stderr[-3000:]}")
        rows = json.loads(line[0][5:])
        loop = own_loop(model, args.delta, maps[model], args.own_loop_sizes, args.new_tokens, args.repeats)
        table.append((model, vocab, rows, loop))
    print(f"\n{start}, {platform.node()}, {os.cpu_count()} CPUs, {args.new_tokens} new tokens per request, "
          f"best of {args.repeats}\n")
    print("| model | run | " + " | ".join(f"{n} concurrent" for n in args.sizes) + " |")
    print("|---|---|" + "---:|" * len(args.sizes))
    for model, vocab, rows, loop in table:
        plain = {int(k): v for k, v in rows["plain"].items()}
        steered = {int(k): v for k, v in rows["steered"].items()}
        print(f"| {model} | vLLM plain | " + " | ".join(f"{plain[n]:.0f}" for n in args.sizes) + " |")
        print(f"| {model} | vLLM + delta ({vocab}) | " + " | ".join(
            f"{steered[n]:.0f} ({steered[n] / plain[n]:.2f}x plain)" for n in args.sizes) + " |")
        print(f"| {model} | crossmodel loop + delta | " + " | ".join(
            f"{loop[n]:.0f} (vLLM {steered[n] / loop[n]:.1f}x)" if n in loop else "-" for n in args.sizes) + " |")
    print("\ntokens/s of output tokens; goals: vLLM + delta >= 0.8x vLLM plain at 32, >= 3x the crossmodel loop at 8")


if __name__ == "__main__":
    main()
