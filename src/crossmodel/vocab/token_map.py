"""The TokenMap artefact: user id -> delta id (or several weighted delta ids), saved as safetensors + JSON.

The artefact (docs/MAPS.md): `token_map.safetensors` holds `ids` (int64 [user_rows], −1 = unmapped), `match`
(uint8), optional `distance` and `extends` (1 = the user token's text is longer than its delta token's), and for
one-to-many `indptr`/`indices`/`weights`; `token_map.json` holds schema version, mode and
options, fingerprints of both tokenizers, sizes, coverage and the library version. `gather` moves delta logits
into the user's vocabulary (unmapped rows get `fill`, 0 in the reference).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossmodel.io import atomic_directory, atomic_write_json, check_safetensors, read_text
from crossmodel.vocab.vocabulary import Vocabulary, load_vocabulary

SCHEMA_VERSION = 1
TENSORS_FILE = "token_map.safetensors"
META_FILE = "token_map.json"
REDUCTIONS = ("max", "logsumexp", "weighted_sum")
_META_KEYS = {"schema_version", "crossmodel_version", "mode", "options", "user_fingerprint", "delta_fingerprint",
              "user_rows", "delta_rows", "user_size", "delta_size", "user_source", "delta_source", "coverage"}
_OPTIONAL_TENSORS = ("distance", "extends", "indptr", "indices", "weights")


def _version() -> str:
    from crossmodel import __version__

    return __version__


def _fit_rows(array: np.ndarray, rows: int, pad: int) -> np.ndarray:
    """Pad (with `pad`) or cut a per-user-row array to the user model's logits width."""
    if len(array) >= rows:
        return array[:rows]
    return np.concatenate([array, np.full(rows - len(array), pad, dtype=array.dtype)])


def _check_rows(vocab: Vocabulary, rows: int | None, side: str) -> None:
    """A logits width below the tokenizer's base vocabulary cannot belong to a model using it (added tokens may
    lie beyond it: Gemma-3's model has 262,144 rows for a tokenizer of 262,145 tokens)."""
    if rows is not None and rows < vocab.base_size:
        raise ValueError(f"{side}_rows={rows} is fewer than the {vocab.base_size} base tokens of the {side} tokenizer "
                         f"({vocab.source or 'given'}); pass the {side} model's logits width (its config vocab_size, "
                         f"or --{side}-rows left out for the tokenizer size)")


@dataclass
class TokenMap:
    """A map from the user model's logits rows to the delta model's logits rows."""

    ids: torch.Tensor  # int64 [user_rows], −1 = unmapped
    match: torch.Tensor  # uint8 [user_rows], 1 = exact / same-id match
    mode: str
    user_fingerprint: str
    delta_fingerprint: str
    user_rows: int
    delta_rows: int
    options: dict[str, Any] = field(default_factory=dict)
    distance: torch.Tensor | None = None  # int64 [user_rows], −1 = unmapped
    extends: torch.Tensor | None = None  # uint8 [user_rows], 1 = the user token's text is longer than its delta token's
    indptr: torch.Tensor | None = None  # one-to-many CSR: int64 [user_rows + 1]
    indices: torch.Tensor | None = None  # int64 [nnz] delta ids
    weights: torch.Tensor | None = None  # float32 [nnz]
    info: dict[str, Any] = field(default_factory=dict)  # sizes and sources of both tokenizers
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    # ---- construction -----------------------------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, user: Vocabulary, delta: Vocabulary, mode: str, ids: np.ndarray, match: np.ndarray, *,
                    distance: np.ndarray | None = None, user_rows: int | None = None, delta_rows: int | None = None,
                    options: dict | None = None, csr: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                    ) -> TokenMap:
        """Wrap per-user-token arrays, fitted to `user_rows` (extra rows unmapped) and checked against `delta_rows`."""
        user_rows = len(ids) if user_rows is None else int(user_rows)
        delta_rows = len(delta.tokens) if delta_rows is None else int(delta_rows)
        if user_rows <= 0 or delta_rows <= 0:
            raise ValueError(f"user_rows and delta_rows must be positive, got {user_rows} and {delta_rows}")
        ids = _fit_rows(np.asarray(ids, dtype=np.int64), user_rows, -1)
        out_of_range = ids >= delta_rows
        if out_of_range.any():
            warnings.warn(f"{int(out_of_range.sum())} user tokens map to delta ids >= delta_rows={delta_rows}; "
                          "they are left unmapped", stacklevel=3)
            ids = np.where(out_of_range, -1, ids)
        match = np.where(ids >= 0, _fit_rows(np.asarray(match, dtype=np.uint8), user_rows, 0), 0).astype(np.uint8)
        tmap = cls(ids=torch.from_numpy(ids), match=torch.from_numpy(match), mode=mode,
                   user_fingerprint=user.fingerprint, delta_fingerprint=delta.fingerprint, user_rows=user_rows,
                   delta_rows=delta_rows, options=dict(options or {}),
                   info={"user_size": len(user.tokens), "delta_size": len(delta.tokens),
                         "user_source": user.source, "delta_source": delta.source})
        if distance is not None:
            dist = _fit_rows(np.asarray(distance, dtype=np.int64), user_rows, -1)
            tmap.distance = torch.from_numpy(np.where(ids >= 0, dist, -1))
        if csr is not None:
            tmap.indptr, tmap.indices, tmap.weights = _fit_csr(*csr, user_rows, delta_rows)
        return tmap

    @classmethod
    def build(cls, user: Any, delta: Any, mode: str = "cmc", user_rows: int | None = None,
              delta_rows: int | None = None, **options: Any) -> TokenMap:
        """Build a map with one of `MAPPERS` ("cmc", "normalized", "one-to-many") from two tokenizers."""
        # imported here, not at the top: the mappers build TokenMaps, so map_modes.py imports this module (a cycle)
        from crossmodel.vocab.map_modes import MAPPERS

        if mode not in MAPPERS:
            raise ValueError(f"unknown map mode {mode!r}; choose one of {sorted(MAPPERS)}")
        user, delta = load_vocabulary(user), load_vocabulary(delta)
        _check_rows(user, user_rows, "user")
        _check_rows(delta, delta_rows, "delta")
        tmap = MAPPERS[mode](user, delta, user_rows=user_rows, delta_rows=delta_rows, **options)
        return tmap.with_extensions(user, delta)

    def with_extensions(self, user: Any, delta: Any) -> TokenMap:
        """This map with `extends` filled from the two tokenizers (one-to-one maps; a no-op when known already).

        Maps saved before `extends` existed get it here, from the tokenizers the steering code has at hand."""
        if self.extends is None and self.indptr is None:
            from crossmodel.vocab.cross_family import extension_rows  # cross_family builds TokenMaps: a cycle

            self.extends = torch.from_numpy(extension_rows(load_vocabulary(user), load_vocabulary(delta),
                                                           self.ids.numpy(), self.match.numpy()))
        return self

    @classmethod
    def identity(cls, vocab: Any, rows: int | None = None, delta_rows: int | None = None) -> TokenMap:
        """The map between two models sharing one vocabulary: row i -> row i (gather = direct addition)."""
        vocab = load_vocabulary(vocab)
        rows = len(vocab.tokens) if rows is None else int(rows)
        delta_rows = rows if delta_rows is None else int(delta_rows)
        ids = np.arange(rows, dtype=np.int64)
        ids[ids >= delta_rows] = -1  # user rows the delta model lacks (e.g. padded logits) stay unmapped
        return cls.from_arrays(vocab, vocab, "identity", ids, np.ones(rows, dtype=np.uint8),
                               distance=np.zeros(rows, dtype=np.int64), user_rows=rows, delta_rows=delta_rows)

    # ---- use --------------------------------------------------------------------------------------------------
    def _on(self, name: str, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
        key = (name, device, dtype)
        if key not in self._cache:
            if name in ("_ids_clamped", "_unmapped"):
                tensor = self.ids.clamp(min=0) if name == "_ids_clamped" else (self.ids < 0).nonzero().flatten()
            else:
                tensor = getattr(self, name) if not name.startswith("_") else self._padded()[name]
            self._cache[key] = tensor.to(device=device, dtype=dtype or tensor.dtype)
        return self._cache[key]

    def _padded(self) -> dict[str, torch.Tensor]:
        """One-to-many as a padded [user_rows, K] index/weight matrix, for a vectorised gather.

        Padding repeats the row's first delta id with weight 0, which changes none of the reductions (max of a
        duplicate, logsumexp with log 0 = −inf, a zero term in the sum); rows without pieces are listed apart.
        """
        if "padded" not in self._cache:
            counts = (self.indptr[1:] - self.indptr[:-1]).numpy()
            starts = self.indptr[:-1].numpy()
            width = max(int(counts.max(initial=0)), 1)
            rows = np.repeat(np.arange(self.user_rows), counts)
            cols = np.arange(len(rows)) - np.repeat(starts, counts)
            first = np.zeros(self.user_rows, dtype=np.int64)
            first[counts > 0] = self.indices.numpy()[starts[counts > 0]]
            idx = np.repeat(first[:, None], width, axis=1)
            wts = np.zeros((self.user_rows, width), dtype=np.float32)
            idx[rows, cols], wts[rows, cols] = self.indices.numpy(), self.weights.numpy()
            self._cache["padded"] = {"_idx": torch.from_numpy(idx), "_wts": torch.from_numpy(wts),
                                     "_empty": torch.from_numpy(np.flatnonzero(counts == 0))}
        return self._cache["padded"]

    def padded_pieces(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One-to-many: every user row's delta ids and weights as padded [user_rows, K] tensors (padding repeats
        the row's first id with weight 0; a row without pieces holds id 0 with weight 0)."""
        if self.indptr is None:
            raise ValueError(f"padded_pieces needs a one-to-many map; this one is {self.mode!r} (one id per row)")
        padded = self._padded()
        return padded["_idx"], padded["_wts"]

    def gather(self, delta_logits: torch.Tensor, fill: float = 0.0, reduce: str | None = None,
               extension_penalty: float = 0.0) -> torch.Tensor:
        """Delta logits (..., delta_rows) -> logits in the user's vocabulary (..., user_rows); unmapped rows = fill.

        Rows whose user token extends past its delta token (`extends`) get the delta token's logit minus
        `extension_penalty` (0: the reference's plain copy). One-to-many maps reduce their delta tokens with `reduce`
        (default: the map's own option) over max / logsumexp / weighted_sum (weighted_sum expects finite logits).
        """
        if delta_logits.shape[-1] != self.delta_rows:
            raise ValueError(f"delta logits have {delta_logits.shape[-1]} rows in the last dimension but this token "
                             f"map expects delta_rows={self.delta_rows} (built for another delta model? rebuild "
                             "it with `crossmodel map` and delta_rows = the delta model's logits width)")
        if self.indptr is not None:
            return self._gather_many(delta_logits, fill, reduce or self.options.get("reduce", "max"))
        device = delta_logits.device
        out = delta_logits.index_select(-1, self._on("_ids_clamped", device))  # (..., user_rows)
        if extension_penalty and self.extends is not None:
            out.sub_(self._on("extends", device, out.dtype), alpha=extension_penalty)  # (user_rows,) broadcast
        unmapped = self._on("_unmapped", device)
        return out.index_fill_(-1, unmapped, fill) if len(unmapped) else out  # 0 in the reference

    def _gather_many(self, delta_logits: torch.Tensor, fill: float, reduce: str) -> torch.Tensor:
        if reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduce {reduce!r}; choose one of {REDUCTIONS}")
        device = delta_logits.device
        idx, empty = self._on("_idx", device), self._on("_empty", device)
        wts = self._on("_wts", device, delta_logits.dtype)
        picked = delta_logits.index_select(-1, idx.flatten()).unflatten(-1, idx.shape)  # (..., user_rows, K)
        if reduce == "max":
            out = picked.amax(-1)
        elif reduce == "logsumexp":
            out = (picked + wts.log()).logsumexp(-1)
        else:
            out = (picked * wts).sum(-1)  # (..., user_rows)
        return out.index_fill_(-1, empty, fill) if len(empty) else out

    # ---- reporting ---------------------------------------------------------------------------------------------
    def coverage(self) -> dict[str, Any]:
        """Counts of exact / prefix / unmapped rows (within the user tokenizer) and the distance histogram."""
        ids, match = self.ids.numpy(), self.match.numpy()
        in_vocab = min(self.user_rows, int(self.info.get("user_size", self.user_rows)))
        mapped = ids[:in_vocab] >= 0
        stats = {"rows": self.user_rows, "tokenizer_rows": in_vocab, "mapped": int(mapped.sum()),
                 "exact": int((match[:in_vocab] == 1).sum()), "prefix": int((mapped & (match[:in_vocab] == 0)).sum()),
                 "unmapped": int((~mapped).sum()), "padding_rows": self.user_rows - in_vocab}
        if self.extends is not None:
            stats["extends"] = int(self.extends.numpy()[:in_vocab].sum())
        if self.distance is not None:
            dist = self.distance.numpy()[:in_vocab]
            values, counts = np.unique(dist[mapped & (match[:in_vocab] == 0)], return_counts=True)
            stats["distance_histogram"] = {str(int(v)): int(c) for v, c in zip(values, counts)}
        if self.indptr is not None:
            stats["indices_per_row_max"] = int((self.indptr[1:] - self.indptr[:-1]).max())
            stats["indices_total"] = int(self.indptr[-1])
        return stats

    # ---- artefact ----------------------------------------------------------------------------------------------
    def verify(self, user: Any = None, delta: Any = None) -> None:
        """Raise ValueError naming the side whose tokenizer differs from the one this map was built for."""
        for side, given, stored in (("user", user, self.user_fingerprint), ("delta", delta, self.delta_fingerprint)):
            if given is None:
                continue
            vocab = load_vocabulary(given)
            if vocab.fingerprint != stored:
                raise ValueError(
                    f"the {side} tokenizer ({vocab.source or 'given'}, fingerprint {vocab.fingerprint[:12]}) is not "
                    f"the one this token map was built for (fingerprint {stored[:12]}); rebuild the map with "
                    "`crossmodel map --user USER_TOKENIZER --delta DELTA_TOKENIZER --out DIR`")

    def metadata(self) -> dict[str, Any]:
        """The JSON side of the artefact."""
        return {"schema_version": SCHEMA_VERSION, "crossmodel_version": _version(), "mode": self.mode,
                "options": self.options, "user_fingerprint": self.user_fingerprint,
                "delta_fingerprint": self.delta_fingerprint, "user_rows": self.user_rows,
                "delta_rows": self.delta_rows, "coverage": self.coverage(), **self.info}

    def save(self, directory: str | Path) -> Path:
        """Write `token_map.safetensors` + `token_map.json` into `directory` atomically; return the directory."""
        from safetensors.torch import save_file

        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            tensors = {"ids": self.ids, "match": self.match}
            tensors |= {k: getattr(self, k) for k in _OPTIONAL_TENSORS if getattr(self, k) is not None}
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / TENSORS_FILE),
                      metadata={"format": "pt", "schema_version": str(SCHEMA_VERSION)})
            atomic_write_json(tmp / META_FILE, self.metadata())
        return directory

    @classmethod
    def load(cls, directory: str | Path, user: Any = None, delta: Any = None) -> TokenMap:
        """Read a saved map; with `user`/`delta` given, check it was built for those tokenizers."""
        from safetensors.torch import load_file

        directory = Path(directory)
        for name in (META_FILE, TENSORS_FILE):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name} not found: not a token map directory (build one with "
                                        "`crossmodel map --user ... --delta ... --out DIR`)")
        rebuild = "the token map is damaged: build it again with `crossmodel map`"
        try:
            meta = json.loads(read_text(directory / META_FILE))
        except json.JSONDecodeError as err:
            raise ValueError(f"{directory / META_FILE} is not valid JSON ({err}); {rebuild}") from None
        if not isinstance(meta, dict):
            raise ValueError(f"{directory / META_FILE} is not a JSON object; {rebuild}")
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise ValueError(f"{directory / META_FILE}: schema_version {meta.get('schema_version')!r} is not "
                             f"{SCHEMA_VERSION}; rebuild the map with this crossmodel version (`crossmodel map`)")
        unknown = sorted(set(meta) - _META_KEYS)
        if unknown:
            warnings.warn(f"{directory / META_FILE}: ignoring unknown keys {unknown}", stacklevel=2)
        check_safetensors(directory / TENSORS_FILE, rebuild)
        tensors = load_file(str(directory / TENSORS_FILE))
        if "ids" not in tensors or tensors["ids"].shape != (meta["user_rows"],):
            raise ValueError(f"{directory / TENSORS_FILE}: 'ids' missing or not of shape [user_rows="
                             f"{meta['user_rows']}]; the artefact is damaged, rebuild it with `crossmodel map`")
        tmap = cls(ids=tensors["ids"], match=tensors.get("match", (tensors["ids"] >= 0).to(torch.uint8)),
                   mode=meta["mode"], user_fingerprint=meta["user_fingerprint"],
                   delta_fingerprint=meta["delta_fingerprint"], user_rows=int(meta["user_rows"]),
                   delta_rows=int(meta["delta_rows"]), options=meta.get("options", {}),
                   info={k: meta[k] for k in ("user_size", "delta_size", "user_source", "delta_source") if k in meta},
                   **{k: tensors.get(k) for k in _OPTIONAL_TENSORS})
        tmap.verify(user=user, delta=delta)
        return tmap


def _fit_csr(indptr: np.ndarray, indices: np.ndarray, weights: np.ndarray, user_rows: int,
             delta_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fit CSR rows to `user_rows` (extra rows empty) and drop entries outside the delta model's rows."""
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    weights = np.asarray(weights, dtype=np.float32)
    counts = np.diff(indptr)
    counts = _fit_rows(counts, user_rows, 0)
    row_of = np.repeat(np.arange(user_rows), counts)
    keep = indices[:len(row_of)] < delta_rows
    counts = np.bincount(row_of[keep], minlength=user_rows)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return (torch.from_numpy(indptr), torch.from_numpy(indices[:len(row_of)][keep].copy()),
            torch.from_numpy(weights[:len(row_of)][keep].copy()))
