"""One-to-many mode: each user token maps to the delta pieces that spell its bytes (Tik-to-Tok in spirit).

A user token's byte form is cut into delta pieces by greedy longest match over the delta vocabulary's byte forms
(regular pieces before byte tokens), so "▁unbelievable" may become ["Ġun", "belie", "vable"]. Piece i gets weight
decay^i (normalised to sum 1): the first piece is what the delta model predicts at this very position. At gather
time the pieces' logits are reduced by max, logsumexp (weighted) or a weighted sum. Special tokens map as in the
normalized mode (role, then exact content), to one delta token.
"""

from __future__ import annotations

import numpy as np

from crossmodel.vocab.cross_family import byte_forms, map_special
from crossmodel.vocab.token_map import REDUCTIONS, TokenMap
from crossmodel.vocab.vocabulary import Vocabulary


def segment(form: str, index: dict[str, int], longest: int) -> list[int]:
    """Greedy longest-match segmentation of `form` into delta ids; [] when some position has no piece."""
    pieces, pos = [], 0
    while pos < len(form):
        for k in range(min(longest, len(form) - pos), 0, -1):
            hit = index.get(form[pos:pos + k])
            if hit is not None:
                pieces.append(hit)
                pos += k
                break
        else:
            return []
    return pieces


def build_one_to_many_arrays(user: Vocabulary, delta: Vocabulary, max_pieces: int = 4, decay: float = 0.5,
                             ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """ids (first piece) / match / CSR (indptr, indices, weights) over the full user vocabulary."""
    if max_pieces < 1:
        raise ValueError(f"max_pieces must be >= 1, got {max_pieces}")
    if not 0.0 < decay <= 1.0:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    src, dst = byte_forms(user), byte_forms(delta)
    longest = max((len(f) for f in dst.index), default=1)
    special = map_special(user, delta)
    rows: list[list[int]] = []
    exact = np.zeros(len(src.forms), dtype=np.uint8)
    for i, form in enumerate(src.forms):
        hit = special.get(i) if i in user.special_ids else (dst.index.get(form) if form else None)
        if hit is not None:
            rows.append([hit])
            exact[i] = 1
        elif i in user.special_ids or src.added_only[i] or not form:
            rows.append([])  # special and added tokens: role / exact content only
        else:
            rows.append(segment(form, dst.index, longest)[:max_pieces])
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = np.array([d for r in rows for d in r], dtype=np.int64)
    raw = np.array([decay ** k for r in rows for k in range(len(r))], dtype=np.float64)
    weights = (raw / np.repeat(np.add.reduceat(raw, indptr[:-1][counts > 0]), counts[counts > 0])
               if len(raw) else raw).astype(np.float32)
    ids = np.array([r[0] if r else -1 for r in rows], dtype=np.int64)
    return ids, exact, (indptr, indices, weights)


def build_one_to_many_map(user: Vocabulary, delta: Vocabulary, *, user_rows: int | None = None,
                          delta_rows: int | None = None, max_pieces: int = 4, decay: float = 0.5,
                          reduce: str = "max") -> TokenMap:
    """One-to-many map (mode "one-to-many"); `reduce` (max|logsumexp|weighted_sum) is the default at gather time."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"unknown reduce {reduce!r}; choose one of {REDUCTIONS}")
    ids, match, csr = build_one_to_many_arrays(user, delta, max_pieces, decay)
    return TokenMap.from_arrays(user, delta, "one-to-many", ids, match, user_rows=user_rows, delta_rows=delta_rows,
                                options={"max_pieces": max_pieces, "decay": decay, "reduce": reduce}, csr=csr)
