"""PM-MinED (prefix-matched minimum edit distance), bit-identical to the CMC reference (docs/MAPS.md).

The reference scans every delta token for every user token. Every candidate it admits is a prefix of the user
token or extends it, so the edit distance is just the length difference: the longest delta prefix of u is one
dict look-up per prefix length, and the shortest delta token extending u is a range of the sorted delta
vocabulary. The whole map is a few hash and bisect operations per token, not a V x V scan.
"""

from __future__ import annotations

import bisect
import warnings
from collections.abc import Sequence

import numpy as np

from crossmodel.vocab.token_map import TokenMap
from crossmodel.vocab.vocabulary import Vocabulary

SPACE_MARK = "▁"  # SentencePiece's space: the bare piece is only a candidate for all-space user tokens
_MAX_CHAR = 0x10FFFF


class _ExtensionIndex:
    """For a string u: the shortest delta token that strictly extends u, lowest id on ties (a range-min query)."""

    def __init__(self, delta_forms: Sequence[str | None]):
        order = sorted((f, i) for i, f in enumerate(delta_forms) if f)
        self.sorted_forms = [f for f, _ in order]
        # key = length * 2^32 + id: the minimum over a range is the shortest token, then the lowest id
        self.keys = np.array([len(f) * (1 << 32) + i for f, i in order], dtype=np.int64)

    def best(self, u: str) -> tuple[int, int] | None:
        """(distance, delta id) of the best strict extension of u, or None."""
        lo = bisect.bisect_right(self.sorted_forms, u)  # skip u itself: only strict extensions
        last = ord(u[-1])
        upper = u[:-1] + chr(last + 1) if last < _MAX_CHAR else u + chr(_MAX_CHAR)
        hi = bisect.bisect_left(self.sorted_forms, upper, lo)
        if hi <= lo:
            return None
        key = int(self.keys[lo:hi].min()) if hi - lo > 8 else min(self.keys[lo:hi].tolist())
        return (key >> 32) - len(u), key & 0xFFFFFFFF


def first_ids(forms: Sequence[str | None]) -> dict[str, int]:
    """form -> lowest id holding it (None / empty forms skipped)."""
    index: dict[str, int] = {}
    for i, f in enumerate(forms):
        if f:
            index.setdefault(f, i)
    return index


def pm_mined(user_forms: Sequence[str | None], delta_forms: Sequence[str | None], *, bare: str | None = SPACE_MARK,
             delta_index: dict[str, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map each user form to a delta id by exact match, else the nearest prefix-related delta form.

    Returns `ids` (int64, −1 = no candidate), `match` (uint8, 1 = exact) and `distance` (int64, −1 = unmapped).
    None user forms are left unmapped (callers handle them, e.g. special tokens); None delta forms are never
    candidates. `bare` is the lone space marker, a candidate only for user forms made of it alone.
    """
    exact = first_ids(delta_forms) if delta_index is None else delta_index
    ext = _ExtensionIndex(delta_forms)
    n = len(user_forms)
    ids = np.full(n, -1, dtype=np.int64)
    match = np.zeros(n, dtype=np.uint8)
    distance = np.full(n, -1, dtype=np.int64)
    for row, u in enumerate(user_forms):
        if not u:
            continue
        hit = exact.get(u)
        if hit is not None:
            ids[row], match[row], distance[row] = hit, 1, 0
            continue
        all_bare = bare is not None and u == bare * (len(u) // len(bare))
        best = None
        for k in range(len(u) - 1, 0, -1):  # longest proper prefix first = smallest distance
            d = exact.get(u[:k])
            if d is not None and (all_bare or u[:k] != bare):
                best = (len(u) - k, d)
                break
        longer = ext.best(u)
        if longer is not None and (best is None or longer < best):
            best = longer
        if best is not None:
            distance[row], ids[row] = best
    return ids, match, distance


def is_angle_token(token: str) -> bool:
    """The reference's byte-token shortcut: tokens that look like `<…>` with length > 2."""
    return len(token) > 2 and token.startswith("<") and token.endswith(">")


def build_cmc_arrays(user: Vocabulary, delta: Vocabulary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference PM-MinED map over user ids 0 .. user.base_size − 1 (added tokens excluded).

    Special and `<…>` user tokens keep their own id (match = 1), as the reference does; a warning names how many
    of them land on a different delta token (only sound when both layouts agree).
    """
    user_tokens = user.tokens[:user.base_size]
    specials = user.special_tokens
    same_id = [t in specials or is_angle_token(t) for t in user_tokens]
    forms = [None if s else t for t, s in zip(user_tokens, same_id)]
    ids, match, distance = pm_mined(forms, delta.tokens, bare=SPACE_MARK, delta_index=delta.token_index)
    rows = np.flatnonzero(np.array(same_id, dtype=bool))
    ids[rows], match[rows], distance[rows] = rows, 1, 0
    disagree = [int(r) for r in rows if r >= len(delta.tokens) or delta.tokens[r] != user_tokens[r]]
    if disagree:
        warnings.warn(f"cmc mode: {len(disagree)} special/`<…>` user tokens keep their id but the delta vocabulary "
                      f"holds something else there (e.g. id {disagree[0]}); the layouts differ — consider "
                      "mode='normalized'", stacklevel=4)
    return ids, match, distance


def build_cmc_map(user: Vocabulary, delta: Vocabulary, *, user_rows: int | None = None,
                  delta_rows: int | None = None) -> TokenMap:
    """The reference CMC map (mode "cmc"): rows beyond the user tokenizer's base vocabulary stay unmapped."""
    ids, match, distance = build_cmc_arrays(user, delta)
    return TokenMap.from_arrays(user, delta, "cmc", ids, match, distance=distance, user_rows=user_rows,
                                delta_rows=delta_rows)
