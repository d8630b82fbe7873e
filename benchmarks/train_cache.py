"""10-epoch unlearning with the template-logit cache against recomputing the template every epoch.

Template: SmolLM2-135M-Instruct (zoo `smollm2-135m-instruct`, or --template DIR); forget set: TOFU forget01
(40 QA pairs, from --data, default ../shared/data/tofu/forget01.json) or 40 generated fictitious-author pairs
when that file is absent. Task npo (reference = the template), delta 2 layers x 256. Also reports the loss of
the first step from cached rows against the recomputed one (float16 and bfloat16 caches).

    .venv/bin/python benchmarks/train_cache.py [--epochs 10] [--template smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from crossmodel.steer import DeltaModel
from crossmodel.train import TrainConfig, chat_template_of, encode_examples, generate_facts, load_examples, train
from crossmodel.train.data import Example

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tofu" / "forget01.json"


def _examples(path: Path) -> tuple[list[Example], str]:
    if path.is_file():
        return load_examples(path, "tofu"), str(path)
    records = generate_facts(8, seed=0)
    return [Example([{"role": "user", "content": r["question"]}], r["answer"]) for r in records], "generated"


def _run(template, tokenizer, data, epochs: int, cache: bool, dtype: str, out: Path) -> tuple[float, list[dict]]:
    delta = DeltaModel.create(tokenizer, layers=2, d_model=256, heads=4, seed=0)
    cfg = TrainConfig(task="npo", epochs=epochs, batch_size=8, lr=5e-4, cache=cache, cache_dtype=dtype,
                      save_every=0, progress=False)
    started = time.perf_counter()
    result = train(template, delta.model, data, cfg, out, pad_id=tokenizer.pad_token_id)
    return time.perf_counter() - started, result.history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", default="smollm2-135m-instruct")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=10)
    a = parser.parse_args()
    from crossmodel.models import load_model

    loaded = load_model(a.template)
    examples, source = _examples(a.data)
    data = encode_examples(examples, loaded.tokenizer, chat_template_of(loaded.tokenizer), 256)
    tmp = Path(tempfile.mkdtemp(prefix="train_cache_"))
    try:
        rows = {}
        for name, cache, dtype in (("recompute", False, "float16"), ("cache fp16", True, "float16"),
                                   ("cache bf16", True, "bfloat16")):
            epochs = a.epochs if name != "cache bf16" else 1  # bf16 only for the loss-error column
            seconds, history = _run(loaded.model, loaded.tokenizer, data, epochs, cache, dtype,
                                    tmp / name.replace(" ", "_"))
            rows[name] = (seconds, history, epochs)
        ref = rows["recompute"][1][0]["loss"]
        print(f"template {a.template}, data {source} ({len(data)} examples), task npo, {a.epochs} epochs, "
              f"torch threads {torch.get_num_threads()}")
        print(f"{'variant':<14}{'epochs':>7}{'seconds':>10}{'first-step loss':>17}{'rel. error':>12}")
        for name, (seconds, history, epochs) in rows.items():
            first = history[0]["loss"]
            print(f"{name:<14}{epochs:>7}{seconds:>10.1f}{first:>17.6f}{abs(first - ref) / abs(ref):>12.2e}")
        print(f"speed-up (recompute / cache fp16) = {rows['recompute'][0] / rows['cache fp16'][0]:.2f}x")
        print(json.dumps({k: v[0] for k, v in rows.items()}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
