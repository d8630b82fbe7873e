"""Zoo timings and the conversion check: pull (fresh or cached), reload from the converted directory, GGUF load,
max |logits(converted dir) - logits(GGUF)| on a fixed prompt, and one 1x128 forward. Prints a markdown table.

    .venv/bin/python benchmarks/zoo_load.py                       # all four, in the shared cache
    .venv/bin/python benchmarks/zoo_load.py --no-check            # reload timings only (no GGUF loads)
    .venv/bin/python benchmarks/zoo_load.py smollm2-135m-instruct --fresh   # first pull into a temp cache
"""

from __future__ import annotations

import argparse
import os
import gc
import tempfile
import time

import torch

from crossmodel.io import CACHE_ENV
from crossmodel.models import ZOO, fetch_gguf, load_gguf, load_model, pull

PROMPT = "The quick brown fox jumps over the lazy dog. In 1492, Columbus"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


@torch.no_grad()
def measure(name: str, home: str | None, check: bool = True) -> dict:
    _, pull_s = timed(pull, name, home, progress=False)
    _, verify_s = timed(pull, name, home, progress=False)  # second pull: sha256 re-verification only
    gguf_s, diff = float("nan"), float("nan")
    if check:
        (gguf_model, gguf_tok), gguf_s = timed(load_gguf, fetch_gguf(name, home, progress=False))
        ids = gguf_tok(PROMPT, return_tensors="pt").input_ids
        expected = gguf_model(ids).logits
        del gguf_model
        gc.collect()
    loaded, reload_s = timed(load_model, name)  # reads CROSSMODEL_HOME, set by main() for --fresh
    if check:
        diff = (loaded.model(ids).logits - expected).abs().max().item()
    x = torch.randint(0, loaded.model.config.vocab_size, (1, 128), generator=torch.Generator().manual_seed(0))
    loaded.model(x)  # warm-up
    _, forward_s = timed(loaded.model, x)
    return {"model": name, "pull (s)": pull_s, "2nd pull (s)": verify_s, "GGUF load (s)": gguf_s,
            "reload (s)": reload_s, "max |Δlogits|": diff, "1x128 fwd (s)": forward_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(ZOO))
    parser.add_argument("--no-check", action="store_true", help="skip the GGUF load and the logits comparison")
    parser.add_argument("--fresh", action="store_true", help="pull into a new temporary cache (measures a first pull)")
    args = parser.parse_args()
    rows = []
    for name in args.names:
        with tempfile.TemporaryDirectory() as tmp:
            if args.fresh:
                os.environ[CACHE_ENV] = tmp
            rows.append(measure(name, tmp if args.fresh else None, check=not args.no_check))
        gc.collect()
    keys = list(rows[0])
    print(f"threads={torch.get_num_threads()} torch={torch.__version__} load average={os.getloadavg()[0]:.1f}")
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
