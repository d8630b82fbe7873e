"""The template-logit cache: the frozen template's log-probability rows at every loss position of a data set,
computed once and reused across epochs (unlearning runs many epochs over small sets).

Form: full rows of log_softmax(z_template) in float16 on disk (safetensors shards, read back by slice). float16
rather than bfloat16 because its 11-bit mantissa keeps every loss within ~5e-5 relative of the recomputed one
on SmolLM2 + TOFU (bfloat16's 8 bits: ~2.5e-4; benchmarks/train_cache.py, docs/TRAINING.md). Log-probs rather than logits, because every combination
rule gives the same normalised combined distribution when handed log_softmax(z_template) instead of z_template.
A JSON key (template weights digest, token ids, dtype) guards against reuse with another template or data set.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from crossmodel.io import atomic_directory, atomic_write_json
from crossmodel.train.combined import live_template_rows, loss_positions
from crossmodel.train.data import Encoded, collate
from crossmodel.train.templates import IGNORE_INDEX

CACHE_JSON = "template_cache.json"
SHARD = "rows-{:05d}.safetensors"
SCHEMA_VERSION = 1
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def template_digest(template: torch.nn.Module) -> str:
    """A cheap sha256 over the template's parameter shapes and float64 sums (changes when weights change)."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in template.named_parameters():
            h.update(f"{name}{tuple(p.shape)}{p.double().sum().item():.10e}".encode())
    return h.hexdigest()


def loss_position_count(encoded: list[Encoded]) -> int:
    """Loss positions (rows a cache stores) of a data set: each example's labelled tokens after the first."""
    return sum(sum(1 for y in e.labels[1:] if y != IGNORE_INDEX) for e in encoded)


def estimate_bytes(encoded: list[Encoded], vocab_rows: int, dtype: str = "float16") -> int:
    """Disk size of the cache of `encoded`: one row of `vocab_rows` values per loss position."""
    return loss_position_count(encoded) * vocab_rows * DTYPES[dtype].itemsize


def cache_key(template: torch.nn.Module, encoded: list[Encoded], dtype: str) -> str:
    """Identity of a cache: template weights, every example's ids and labels, and the storage dtype."""
    h = hashlib.sha256(f"{SCHEMA_VERSION}|{dtype}|{template_digest(template)}".encode())
    for e in encoded:
        h.update(json.dumps([e.ids, e.labels]).encode())
    return h.hexdigest()


class TemplateCache:
    """Cached template log-prob rows of one data set; `rows_for(index)` serves a batch (index = example ids)."""

    def __init__(self, path: Path):
        meta = json.loads((path / CACHE_JSON).read_text())
        self.path, self.meta = path, meta
        self.key = meta["key"]
        self._shard_of = meta["shard_of"]  # example -> shard
        self._offset = meta["offset"]  # example -> first row in its shard
        self._length = meta["length"]  # example -> number of loss positions
        self._files = [safe_open(str(path / SHARD.format(i)), framework="pt") for i in range(meta["shards"])]

    def rows_for(self, index: list[int] | torch.Tensor) -> torch.Tensor:
        """Stored rows of the given examples, concatenated in order: (sum of their loss positions, V)."""
        parts = []
        for i in [int(i) for i in index]:
            start = self._offset[i]
            parts.append(self._files[self._shard_of[i]].get_slice("rows")[start:start + self._length[i]])
        return torch.cat(parts)

    @classmethod
    def open(cls, template: torch.nn.Module, encoded: list[Encoded], path: str | Path,
             dtype: str = "float16") -> "TemplateCache":
        """The cache in `path` (built by another process of the run), after checking that its key is this
        template's, data's and dtype's."""
        path = Path(path)
        found = json.loads((path / CACHE_JSON).read_text()).get("key") if (path / CACHE_JSON).is_file() else None
        if found != cache_key(template, encoded, dtype):
            raise ValueError(f"{path}: no template cache for this template, data and dtype (the main process builds "
                             "it first); rerun, or pass --no-cache")
        return cls(path)

    @classmethod
    def build(cls, template: torch.nn.Module, encoded: list[Encoded], path: str | Path, *, pad_id: int,
              batch_size: int = 8, dtype: str = "float16") -> "TemplateCache":
        """Compute the cache of `encoded` under `template` into `path`, or reuse the one there if its key
        matches (template weights, data, dtype)."""
        if dtype not in DTYPES:
            raise ValueError(f"unknown cache dtype {dtype!r}; choose one of {sorted(DTYPES)}")
        path, key = Path(path), cache_key(template, encoded, dtype)
        if (path / CACHE_JSON).is_file() and json.loads((path / CACHE_JSON).read_text()).get("key") == key:
            return cls(path)
        shard_of, offset, length = [], [], []
        with atomic_directory(path) as tmp:
            for shard, start in enumerate(range(0, len(encoded), batch_size)):
                index = list(range(start, min(start + batch_size, len(encoded))))
                rows = _batch_rows(template, [encoded[i] for i in index], index, pad_id)
                at = 0
                for i in index:
                    n = sum(1 for y in encoded[i].labels[1:] if y != IGNORE_INDEX)
                    shard_of.append(shard), offset.append(at), length.append(n)
                    at += n
                save_file({"rows": rows.to(DTYPES[dtype]).contiguous()}, str(tmp / SHARD.format(shard)))
            atomic_write_json(tmp / CACHE_JSON, {"schema_version": SCHEMA_VERSION, "key": key, "dtype": dtype,
                                                 "shards": len(range(0, len(encoded), batch_size)),
                                                 "shard_of": shard_of, "offset": offset, "length": length})
        return cls(path)


def _batch_rows(template: torch.nn.Module, items: list[Encoded], index: list[int], pad_id: int) -> torch.Tensor:
    batch = collate(items, index, pad_id)
    rows, cols, _ = loss_positions(batch.labels)
    fn = live_template_rows(template, batch.input_ids, batch.attention_mask, rows, cols)
    parts = [fn(s, min(s + 256, len(rows))) for s in range(0, len(rows), 256)] or [fn(0, 0)]  # fn(0, 0): (0, V)
    return torch.cat(parts)  # (N, V)
