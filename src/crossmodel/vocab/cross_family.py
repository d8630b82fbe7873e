"""Cross-family mode ("normalized"): PM-MinED on the UTF-8 bytes tokens stand for (docs/MAPS.md).

Special tokens never match text: they map by role (bos/eos/pad/unk), else by exact content to a delta
special/added token, else stay unmapped. The user's added non-special tokens (Gemma's "\\n", tabs, `<unusedN>`)
match only their exact bytes; on the delta side they are ordinary text. Ordinary tokens run PM-MinED on their
byte forms; on collisions a regular piece beats a byte token (`<0xNN>`), then the lowest id; the bare space is a
candidate only for all-space tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossmodel.vocab.pmmined import first_ids, pm_mined
from crossmodel.vocab.surface import is_byte_token, latin1_form
from crossmodel.vocab.token_map import TokenMap
from crossmodel.vocab.vocabulary import Vocabulary

FALLBACKS = ("none", "first_byte", "unk")
SPACE = " "  # the bare space, in the latin-1 string view of bytes used below


@dataclass(frozen=True)
class ByteForms:
    """A vocabulary on the common surface: each token's bytes as a latin-1 string (None = not text)."""

    forms: list[str | None]  # candidates for text matching (special tokens: None)
    added_only: np.ndarray  # bool: added non-special tokens, matched by exact bytes only
    index: dict[str, int]  # form -> id: regular pieces before byte tokens, then the lowest id


def byte_forms(vocab: Vocabulary) -> ByteForms:
    """Byte forms of every token (as latin-1 strings, so str operations act on bytes)."""
    forms: list[str | None] = []
    for i, tok in enumerate(vocab.tokens):
        forms.append(None if (i in vocab.special_ids or not tok) else latin1_form(tok, vocab.family))
    added_only = np.zeros(len(forms), dtype=bool)
    added_only[[i for i in vocab.added if i not in vocab.special_ids and i < len(forms)]] = True
    regular = [None if f is not None and is_byte_token(vocab.tokens[i], vocab.family) else f
               for i, f in enumerate(forms)]
    index = first_ids(regular)
    for i, f in enumerate(forms):  # byte tokens only fill the forms no regular piece has
        if f and f not in index:
            index[f] = i
    return ByteForms(forms=forms, added_only=added_only, index=index)


def map_special(user: Vocabulary, delta: Vocabulary) -> dict[int, int]:
    """user special id -> delta special id, by role first, then by exact content; unmatched ones are absent."""
    role_of: dict[int, str] = {}
    for role in ("bos", "eos", "pad", "unk"):  # an id with several roles (pad = eos) keeps the first
        if role in user.special:
            role_of.setdefault(user.special[role], role)
    delta_content = {}
    for i in sorted(delta.special_ids | set(delta.added), reverse=True):
        delta_content[delta.tokens[i]] = i  # reversed: the lowest id wins
    out = {}
    for i in sorted(user.special_ids):
        role = role_of.get(i)
        if role in delta.special:
            out[i] = delta.special[role]
        elif user.tokens[i] in delta_content:
            out[i] = delta_content[user.tokens[i]]
    return out


def _fallback_ids(user_forms: list[str | None], target: ByteForms, delta: Vocabulary, fallback: str,
                  rows: np.ndarray) -> np.ndarray:
    """Delta ids for user rows PM-MinED left without a candidate (−1 where the fallback finds none either)."""
    if fallback == "unk":
        return np.full(len(rows), delta.special.get("unk", -1), dtype=np.int64)
    return np.array([target.index.get(user_forms[r][0], -1) for r in rows], dtype=np.int64)


def build_normalized_arrays(user: Vocabulary, delta: Vocabulary, fallback: str = "none",
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ids / match / distance over the full user vocabulary (added tokens included)."""
    if fallback not in FALLBACKS:
        raise ValueError(f"unknown fallback {fallback!r}; choose one of {FALLBACKS}")
    src, dst = byte_forms(user), byte_forms(delta)
    text_forms = [None if a else f for f, a in zip(src.forms, src.added_only)]
    ids, match, distance = pm_mined(text_forms, dst.forms, bare=SPACE, delta_index=dst.index)
    for row in np.flatnonzero(src.added_only):  # added text tokens: exact bytes only
        hit = dst.index.get(src.forms[row]) if src.forms[row] else None
        if hit is not None:
            ids[row], match[row], distance[row] = hit, 1, 0
    for row, target in map_special(user, delta).items():
        ids[row], match[row], distance[row] = target, 1, 0
    if fallback != "none":
        rows = np.array([r for r, f in enumerate(text_forms) if f and ids[r] < 0], dtype=np.int64)
        if len(rows):
            ids[rows] = _fallback_ids(text_forms, dst, delta, fallback, rows)
            distance[rows] = np.where(ids[rows] >= 0, [len(text_forms[r]) - 1 for r in rows], -1)
    return ids, match, distance


def build_normalized_map(user: Vocabulary, delta: Vocabulary, *, user_rows: int | None = None,
                         delta_rows: int | None = None, fallback: str = "none") -> TokenMap:
    """Cross-family map (mode "normalized"); `fallback` for tokens with no prefix candidate: none|first_byte|unk."""
    ids, match, distance = build_normalized_arrays(user, delta, fallback)
    return TokenMap.from_arrays(user, delta, "normalized", ids, match, distance=distance, user_rows=user_rows,
                                delta_rows=delta_rows, options={"fallback": fallback})


def extension_rows(user: Vocabulary, delta: Vocabulary, ids: np.ndarray, match: np.ndarray) -> np.ndarray:
    """uint8 per user row: 1 where the row is a prefix match whose user token's text is longer than the text of the
    delta token it maps to (user "ovana" -> delta "ovan"): the delta's logit for its token is only an upper bound on
    the longer token, which needs more text than the delta predicted."""
    user_forms, delta_forms = byte_forms(user).forms, byte_forms(delta).forms
    out = np.zeros(len(ids), dtype=np.uint8)
    for row in np.flatnonzero((np.asarray(ids) >= 0) & (np.asarray(match) == 0)):
        target = int(ids[row])
        if row < len(user_forms) and target < len(delta_forms):
            mine, theirs = user_forms[row], delta_forms[target]
            out[row] = mine is not None and theirs is not None and len(mine) > len(theirs)
    return out
