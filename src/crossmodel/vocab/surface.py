"""Surface forms: the UTF-8 bytes a token stands for, per tokenizer family (docs/MAPS.md, cross-family mode).

SentencePiece writes a space as `▁` and a raw byte as `<0xNN>`; GPT-2 byte-level maps every byte to a printable
character (`Ġ` = space, `Ċ` = newline) with `bytes_to_unicode`; other tokenizers hold plain text.
"""

from __future__ import annotations

import re
from functools import lru_cache

from crossmodel.vocab.vocabulary import Family

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@lru_cache(maxsize=1)
def byte_level_alphabet() -> dict[str, int]:
    """GPT-2's printable character -> byte table (the inverse of its `bytes_to_unicode`)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):  # the remaining bytes (controls, space, ...) take code points from 256 upwards, in order
        if b not in printable:
            table[chr(256 + extra)] = b
            extra += 1
    return table


def byte_piece_value(token: str) -> int | None:
    """NN for a SentencePiece byte-fallback piece `<0xNN>`, else None."""
    m = _BYTE_PIECE.fullmatch(token)
    return int(m.group(1), 16) if m else None


def _sentencepiece_bytes(token: str) -> bytes:
    value = byte_piece_value(token)
    return bytes([value]) if value is not None else token.replace("▁", " ").encode("utf-8")


def _byte_level_bytes(token: str) -> bytes:
    table = byte_level_alphabet()
    if all(c in table for c in token):
        return bytes(table[c] for c in token)
    return token.encode("utf-8")  # not written in the byte alphabet (e.g. an added token): plain text


def _plain_bytes(token: str) -> bytes:
    return token.encode("utf-8")


SURFACE_DECODERS = {Family.SENTENCEPIECE: _sentencepiece_bytes, Family.BYTE_LEVEL: _byte_level_bytes,
                    Family.OTHER: _plain_bytes}


def token_bytes(token: str, family: Family) -> bytes:
    """The bytes `token` stands for in a tokenizer of `family`."""
    return SURFACE_DECODERS[family](token)


@lru_cache(maxsize=1)
def _byte_level_tables() -> tuple[dict[int, str], re.Pattern]:
    """str.translate table char -> latin-1 byte char, and a pattern finding chars outside the byte alphabet."""
    alphabet = byte_level_alphabet()
    outside = re.compile("[^" + "".join(re.escape(c) for c in alphabet) + "]")
    return {ord(c): chr(b) for c, b in alphabet.items()}, outside


def latin1_form(token: str, family: Family) -> str:
    """`token_bytes(token, family)` as a latin-1 string (one char per byte), on a fast path for whole vocabularies."""
    if family is Family.BYTE_LEVEL:
        table, outside = _byte_level_tables()
        if outside.search(token) is None:
            return token.translate(table)
        text = token  # not written in the byte alphabet (e.g. an added token): plain text
    elif family is Family.SENTENCEPIECE:
        value = byte_piece_value(token) if token.startswith("<0x") else None
        if value is not None:
            return chr(value)
        text = token.replace("▁", " ")
    else:
        text = token
    return text if text.isascii() else text.encode("utf-8").decode("latin-1")


def is_byte_token(token: str, family: Family) -> bool:
    """True for SentencePiece byte-fallback pieces (`<0xNN>`): on collisions a regular piece beats them."""
    return family is Family.SENTENCEPIECE and byte_piece_value(token) is not None
