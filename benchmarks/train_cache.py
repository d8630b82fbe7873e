"""10-epoch unlearning with the template-logit cache against recomputing the template every epoch.

Template: SmolLM2-135M-Instruct (zoo `smollm2-135m-instruct`, or --template DIR); forget set: TOFU forget01
(40 QA pairs, from --data, default ../shared/data/tofu/forget01.json) or 40 generated fictitious-author pairs
when that file is absent. Task npo (reference = the template), delta 2 layers x 256. Also reports the relative
error of every loss computed from cached rows against the recomputed one (float16 and bfloat16 caches, a fresh
delta, 8 forget + 8 retain examples).

    .venv/bin/python benchmarks/train_cache.py [--epochs 10] [--template smollm2-135m-instruct]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from crossmodel.steer import DeltaModel
from crossmodel.models import chat_template_of
from crossmodel.train import (LOSSES, TemplateCache, TrainConfig, combined_for_batch,
                              encode_examples, generate_facts, load_examples, train)
from crossmodel.train.data import Example, collate

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "tofu" / "forget01.json"


def _examples(path: Path) -> tuple[list[Example], str]:
    if path.is_file():
        return load_examples(path, "tofu"), str(path)
    records = generate_facts(8, seed=0)
    return [Example([{"role": "user", "content": r["question"]}], r["answer"]) for r in records], "generated"


def _run(template, tokenizer, data, epochs: int, cache: bool, out: Path) -> tuple[float, list[dict]]:
    delta = DeltaModel.create(tokenizer, layers=2, d_model=256, heads=4, seed=0)
    cfg = TrainConfig(task="npo", epochs=epochs, batch_size=8, lr=5e-4, cache=cache,
                      save_every=0, progress=False)
    started = time.perf_counter()
    result = train(template, delta.model, data, cfg, out, pad_id=tokenizer.pad_token_id)
    return time.perf_counter() - started, result.history


@torch.no_grad()
def _loss_errors(template, tokenizer, data, tmp: Path) -> dict[str, dict[str, float]]:
    """Relative error of each loss from cached rows vs recomputed template rows, per cache dtype."""
    delta = DeltaModel.create(tokenizer, layers=2, d_model=256, heads=4, seed=0).model
    pad = tokenizer.pad_token_id
    forget, retain = collate(data[:8], list(range(8)), pad), collate(data[8:16], list(range(8, 16)), pad)

    def view(batch, rows=None):
        return combined_for_batch(delta, batch.input_ids, batch.attention_mask, batch.labels,
                                  None if rows is None else (lambda s, e: rows[s:e]), template)

    live = {n: float(fn(view(forget), view(retain))) for n, fn in LOSSES.items()}
    errors = {}
    for dtype in ("float16", "bfloat16"):
        cache = TemplateCache.build(template, data[:16], tmp / f"errors_{dtype}", pad_id=pad, dtype=dtype)
        f_rows, r_rows = cache.rows_for(range(8)), cache.rows_for(range(8, 16))
        errors[dtype] = {n: abs(float(fn(view(forget, f_rows), view(retain, r_rows))) - live[n]) / abs(live[n])
                         for n, fn in LOSSES.items()}
    return errors


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
        rows = {name: _run(loaded.model, loaded.tokenizer, data, a.epochs, cache, tmp / name.replace(" ", "_"))
                for name, cache in (("recompute", False), ("cache fp16", True))}
        errors = _loss_errors(loaded.model, loaded.tokenizer, data, tmp)
        print(f"template {a.template}, data {source} ({len(data)} examples), task npo, {a.epochs} epochs, "
              f"torch threads {torch.get_num_threads()}")
        print(f"{'variant':<12}{'seconds':>10}{'final loss':>12}")
        for name, (seconds, history) in rows.items():
            print(f"{name:<12}{seconds:>10.1f}{history[-1]['loss']:>12.5f}")
        print(f"speed-up (recompute / cache fp16) = {rows['recompute'][0] / rows['cache fp16'][0]:.2f}x")
        print(f"\nrelative loss error, cached vs recomputed template rows\n{'loss':<12}"
              + "".join(f"{d:>10}" for d in errors))
        for name in LOSSES:
            print(f"{name:<12}" + "".join(f"{errors[d][name]:>10.1e}" for d in errors))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
