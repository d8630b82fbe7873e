"""Import / export of the CMC reference's map triple: PREFIX_id.json, PREFIX_match.json, PREFIX_token.json.

`PREFIX_id.json` is the list of delta ids per user id (−1 = unmapped), `PREFIX_match.json` the list of 0/1 exact
flags, `PREFIX_token.json` the list of [user token, delta token or null] pairs (human-readable; checked on import
when present). A dict keyed by the user id as a string is accepted in place of a list.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crossmodel.io import atomic_write_json
from crossmodel.vocab.token_map import TokenMap
from crossmodel.vocab.vocabulary import Vocabulary, load_vocabulary

SUFFIXES = {"id": "_id.json", "match": "_match.json", "token": "_token.json"}


def reference_paths(prefix: str | Path) -> dict[str, Path]:
    """The three file paths of a reference triple."""
    return {k: Path(f"{prefix}{s}") for k, s in SUFFIXES.items()}


def export_reference(token_map: TokenMap, prefix: str | Path, user: Any, delta: Any) -> dict[str, Path]:
    """Write `token_map` as the reference triple (rows of the user tokenizer only); return the paths."""
    user, delta = load_vocabulary(user), load_vocabulary(delta)
    token_map.verify(user=user, delta=delta)
    rows = min(token_map.user_rows, len(user.tokens))
    ids = token_map.ids[:rows].tolist()
    paths = reference_paths(prefix)
    atomic_write_json(paths["id"], ids)
    atomic_write_json(paths["match"], token_map.match[:rows].tolist())
    atomic_write_json(paths["token"], [[user.tokens[u], delta.tokens[d] if d >= 0 else None]
                                       for u, d in enumerate(ids)])
    return paths


def _read_list(path: Path) -> list:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (a reference map is PREFIX_id.json + PREFIX_match.json "
                                "[+ PREFIX_token.json]; pass the common PREFIX)")
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = [data[k] for k in sorted(data, key=int)]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list (or a dict keyed by id), got {type(data).__name__}")
    return data


def _check_tokens(pairs: list, ids: np.ndarray, user: Vocabulary, delta: Vocabulary, path: Path) -> None:
    for u, (pair, d) in enumerate(zip(pairs, ids)):
        expected = [user.tokens[u], delta.tokens[d] if d >= 0 else None]
        if list(pair) != expected:
            raise ValueError(f"{path}: row {u} is {pair!r} but the given tokenizers give {expected!r}; the map was "
                             "made for other tokenizers (build one with `crossmodel map`)")


def import_reference(prefix: str | Path, user: Any, delta: Any, *, user_rows: int | None = None,
                     delta_rows: int | None = None) -> TokenMap:
    """Read a reference triple into a TokenMap for the given tokenizers (mode "cmc")."""
    user, delta = load_vocabulary(user), load_vocabulary(delta)
    paths = reference_paths(prefix)
    ids = np.asarray(_read_list(paths["id"]), dtype=np.int64)
    match = np.asarray(_read_list(paths["match"]), dtype=np.uint8)
    if len(match) != len(ids):
        raise ValueError(f"{paths['match']} has {len(match)} rows but {paths['id']} has {len(ids)}")
    if len(ids) > len(user.tokens) or ids.max(initial=-1) >= len(delta.tokens):
        raise ValueError(f"{paths['id']}: {len(ids)} rows / max id {ids.max(initial=-1)} do not fit the user "
                         f"({len(user.tokens)}) and delta ({len(delta.tokens)}) vocabularies")
    if paths["token"].is_file():
        _check_tokens(_read_list(paths["token"]), ids, user, delta, paths["token"])
    return TokenMap.from_arrays(user, delta, "cmc", ids, match, user_rows=user_rows, delta_rows=delta_rows,
                                options={"imported_from": str(prefix)})
