"""Read a tokenizer's vocabulary: id -> token string, special tokens and their roles, added tokens, surface family.

Sources (docs/MAPS.md, docs/ARCHITECTURE.md "vocab"): a `tokenizer.json`, a SentencePiece `.model`, a GGUF file
(vocab-only or a full model), an HF model directory, or an already loaded HF tokenizer object. The family is read
from the tokenizer's own config (pre-tokenizer, decoder, byte_fallback, GGUF `tokenizer.ggml.model`), never from a
class name.
"""

from __future__ import annotations

import enum
import hashlib
import json
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossmodel.io import read_text

ROLES = ("bos", "eos", "pad", "unk")
TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
SP_MODEL_NAMES = ("tokenizer.model", "spiece.model", "sentencepiece.bpe.model")

# SentencePiece / GGUF token types (sentencepiece_model.proto; llama.cpp LLAMA_TOKEN_TYPE_*)
_TYPE_UNKNOWN, _TYPE_CONTROL, _TYPE_USER_DEFINED = 2, 3, 4


class Family(enum.Enum):
    """How a tokenizer writes text into its tokens."""

    SENTENCEPIECE = "sentencepiece"  # '▁' for space, '<0xNN>' byte-fallback pieces
    BYTE_LEVEL = "byte_level"  # GPT-2 bytes_to_unicode: 'Ġ' for space, 'Ċ' for newline
    OTHER = "other"  # tokens are plain text


@dataclass(frozen=True)
class Vocabulary:
    """The ordered vocabulary of one tokenizer (id -> token), with its special tokens and surface family."""

    tokens: tuple[str, ...]  # full vocabulary in id order, added tokens included; "" marks an unused id
    base_size: int  # tokenizer.vocab_size: added tokens start here
    special: dict[str, int]  # role (bos/eos/pad/unk) -> id
    special_ids: frozenset[int]  # every special / control id
    added: dict[int, str]  # id -> content of added tokens
    family: Family
    fingerprint: str
    source: str = ""
    token_index: dict[str, int] = field(default=None, repr=False, compare=False)  # token -> lowest id

    def __post_init__(self) -> None:
        if self.token_index is None:
            index: dict[str, int] = {}
            for i, tok in enumerate(self.tokens):
                index.setdefault(tok, i)
            object.__setattr__(self, "token_index", index)

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_tokens(cls, tokens: list[str] | tuple[str, ...], family: Family = Family.SENTENCEPIECE, *,
                    special: dict[str, int] | None = None, special_ids: set[int] | frozenset[int] = frozenset(),
                    added: dict[int, str] | None = None, base_size: int | None = None,
                    source: str = "") -> Vocabulary:
        """A vocabulary from an explicit id -> token list (tests, synthetic vocabularies)."""
        return _make(list(tokens), len(tokens) if base_size is None else base_size, dict(special or {}),
                     set(special_ids), dict(added or {}), family, source)

    @property
    def special_tokens(self) -> frozenset[str]:
        """The strings of every special / control token."""
        return frozenset(self.tokens[i] for i in self.special_ids if 0 <= i < len(self.tokens))


def fingerprint(tokens: tuple[str, ...] | list[str], special: dict[str, int]) -> str:
    """sha256 hex of the id -> token list and the special-token roles."""
    payload = json.dumps({"tokens": list(tokens), "special": {r: special[r] for r in sorted(special)}},
                         ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _make(tokens: list[str | None], base_size: int, special: dict[str, int | None], special_ids: set[int],
          added: dict[int, str], family: Family, source: str) -> Vocabulary:
    toks = tuple("" if t is None else t for t in tokens)
    roles = {r: int(i) for r, i in special.items() if r in ROLES and i is not None and 0 <= int(i) < len(toks)}
    specials = frozenset(int(i) for i in special_ids if 0 <= int(i) < len(toks)) | frozenset(roles.values())
    return Vocabulary(tokens=toks, base_size=int(base_size), special=roles, special_ids=specials,
                      added=dict(sorted(added.items())), family=family, fingerprint=fingerprint(toks, roles),
                      source=source)


# ---- family from tokenizer.json --------------------------------------------------------------------------------

def _components(node: Any) -> list[dict]:
    """Flatten a tokenizer.json component (possibly a Sequence) into its parts."""
    if not isinstance(node, dict):
        return []
    parts = [node]
    for key in ("pretokenizers", "decoders", "normalizers", "processors"):
        for child in node.get(key) or []:
            parts.extend(_components(child))
    return parts


def family_from_tokenizer_json(spec: dict) -> Family:
    """The surface family declared by a parsed tokenizer.json (pre-tokenizer, decoder, normalizer, byte_fallback)."""
    parts = [*_components(spec.get("pre_tokenizer")), *_components(spec.get("decoder"))]
    kinds = {p.get("type") for p in parts}
    if "ByteLevel" in kinds:
        return Family.BYTE_LEVEL
    if "Metaspace" in kinds or "ByteFallback" in kinds or (spec.get("model") or {}).get("byte_fallback"):
        return Family.SENTENCEPIECE
    for p in [*parts, *_components(spec.get("normalizer"))]:
        if p.get("type") == "Replace" and "▁" in (p.get("content"), (p.get("pattern") or {}).get("String")):
            return Family.SENTENCEPIECE
    return Family.OTHER


# ---- readers ---------------------------------------------------------------------------------------------------

def _content(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _json_file(path: Path, fix: str) -> Any:
    """The parsed JSON of `path`; ValueError naming the file, the line and `fix` when it is not valid JSON."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}: "
                         f"truncated or damaged?); {fix}") from None


def _roles_from_config(folder: Path, index: dict[str, int]) -> dict[str, int | None]:
    """Special-token roles declared in tokenizer_config.json / special_tokens_map.json next to a tokenizer.json."""
    roles: dict[str, int | None] = {}
    for name in (SPECIAL_TOKENS_MAP, TOKENIZER_CONFIG):
        path = folder / name
        if not path.is_file():
            continue
        cfg = _json_file(path, "restore the tokenizer files or delete this one")
        if not isinstance(cfg, dict):
            continue
        for role in ROLES:
            content = _content(cfg.get(f"{role}_token"))
            if isinstance(content, str) and content in index:
                roles[role] = index[content]
    return roles


def _roles_from_spec(spec: dict, index: dict[str, int]) -> dict[str, int | None]:
    """Roles a bare tokenizer.json declares itself: the model's unk token and the post-processor's leading special."""
    roles: dict[str, int | None] = {}
    model = spec.get("model") or {}
    unk = model.get("unk_token")
    if model.get("type") == "Unigram" and model.get("unk_id") is not None:
        roles["unk"] = int(model["unk_id"])
    elif isinstance(unk, str) and unk in index:
        roles["unk"] = index[unk]
    post = spec.get("post_processor") or {}
    single = post.get("single") or []
    if post.get("type") == "TemplateProcessing" and single and "SpecialToken" in single[0]:
        bos = single[0]["SpecialToken"]["id"]
        roles["bos"] = index.get(bos)
    return roles


def _read_tokenizer_json(path: Path) -> Vocabulary:
    spec = _json_file(path, "download the tokenizer again or re-save it with save_pretrained")
    model = spec.get("model") if isinstance(spec, dict) else None
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if not vocab or not isinstance(vocab, (dict, list)):
        raise ValueError(f"{path} holds no vocabulary (no model.vocab): it is not a tokenizer.json; give a "
                         "tokenizer.json, a SentencePiece .model, a GGUF file or an HF model directory")
    pairs = [(p[0], i) for i, p in enumerate(vocab)] if isinstance(vocab, list) else list(vocab.items())
    base_size = len(pairs)
    added = {int(a["id"]): a["content"] for a in spec.get("added_tokens") or []}
    size = max([i for _, i in pairs] + list(added) + [-1]) + 1
    tokens: list[str | None] = [None] * size
    for tok, i in pairs:
        tokens[i] = tok
    for i, content in added.items():
        tokens[i] = content
    index = {t: i for i, t in reversed(list(enumerate(tokens))) if t is not None}
    roles = {**_roles_from_spec(spec, index), **_roles_from_config(path.parent, index)}
    special_ids = {int(a["id"]) for a in spec.get("added_tokens") or [] if a.get("special")}
    return _make(tokens, base_size, roles, special_ids, added, family_from_tokenizer_json(spec), str(path))


def _read_sentencepiece(path: Path) -> Vocabulary:
    import sentencepiece as spm

    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as err:
        raise ValueError(f"{path} is not a readable SentencePiece model ({err}); pass a tokenizer.json, a "
                         "SentencePiece .model, a GGUF file or an HF model directory") from err
    n = sp.get_piece_size()
    tokens = [sp.id_to_piece(i) for i in range(n)]
    special_ids = {i for i in range(n) if sp.is_control(i) or sp.is_unknown(i)}
    roles = {"bos": sp.bos_id(), "eos": sp.eos_id(), "pad": sp.pad_id(), "unk": sp.unk_id()}
    roles = {r: i for r, i in roles.items() if i >= 0}
    return _make(tokens, n, roles, special_ids, {}, Family.SENTENCEPIECE, str(path))


_GGUF_FAMILIES = {"llama": Family.SENTENCEPIECE, "gemma": Family.SENTENCEPIECE, "gpt2": Family.BYTE_LEVEL}
# GGUF metadata value types -> struct format (gguf spec: docs/gguf.md); 8 = string, 9 = array
_GGUF_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def _gguf_metadata(path: Path, wanted: set[str]) -> dict[str, Any]:
    """The `wanted` key/value pairs of a GGUF header, read directly (the tensor data is never touched)."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        version, _, n_kv = struct.unpack_from("<IQQ", buf, 4)
        if version not in (2, 3):
            raise ValueError(f"{path}: unsupported GGUF version {version} (expected 2 or 3)")
        pos, out = 24, {}

        def string(at: int) -> tuple[str, int]:
            (n,) = struct.unpack_from("<Q", buf, at)
            return buf[at + 8:at + 8 + n].decode("utf-8", errors="replace"), at + 8 + n

        def value(kind: int, at: int, keep: bool) -> tuple[Any, int]:
            if kind == 8:
                return string(at)
            if kind == 9:
                item, n = struct.unpack_from("<IQ", buf, at)
                at += 12
                if item in _GGUF_SCALARS:
                    size = struct.calcsize(_GGUF_SCALARS[item])
                    vals = list(struct.unpack_from(f"<{n}{_GGUF_SCALARS[item]}", buf, at)) if keep else None
                    return vals, at + n * size
                vals = []
                for _ in range(n):
                    v, at = value(item, at, keep)
                    vals.append(v)
                return vals, at
            fmt = "<" + _GGUF_SCALARS[kind]
            return struct.unpack_from(fmt, buf, at)[0], at + struct.calcsize(fmt)

        for _ in range(n_kv):
            key, pos = string(pos)
            (kind,) = struct.unpack_from("<I", buf, pos)
            val, pos = value(kind, pos + 4, key in wanted)
            if key in wanted:
                out[key] = val
        return out


def _read_gguf(path: Path) -> Vocabulary:
    keys = {"tokens", "token_type", "model", "bos_token_id", "eos_token_id", "padding_token_id", "unknown_token_id"}
    try:
        meta = {k.removeprefix("tokenizer.ggml."): v
                for k, v in _gguf_metadata(path, {f"tokenizer.ggml.{k}" for k in keys}).items()}
    except (KeyError, ValueError, struct.error, IndexError) as err:
        raise ValueError(f"{path} is not a readable GGUF file ({err!r})") from err
    tokens = meta.get("tokens")
    if not tokens:
        raise ValueError(f"{path} holds no tokenizer (no 'tokenizer.ggml.tokens' key)")
    types = meta.get("token_type") or [1] * len(tokens)
    roles = {r: meta.get(f"{k}_token_id") for r, k in (("bos", "bos"), ("eos", "eos"), ("pad", "padding"),
                                                        ("unk", "unknown"))}
    special_ids = {i for i, t in enumerate(types) if t in (_TYPE_UNKNOWN, _TYPE_CONTROL)}
    added = {i: tokens[i] for i, t in enumerate(types) if t == _TYPE_USER_DEFINED}
    return _make(list(tokens), len(tokens), roles, special_ids, added,
                 _GGUF_FAMILIES.get(meta.get("model", ""), Family.OTHER), str(path))


def _read_hf_tokenizer(tok: Any) -> Vocabulary:
    """An already loaded transformers tokenizer (fast or slow)."""
    vocab = tok.get_vocab()
    tokens: list[str | None] = [None] * (max(vocab.values(), default=-1) + 1)
    for t, i in vocab.items():
        tokens[i] = t
    added = {int(i): str(getattr(a, "content", a)) for i, a in (getattr(tok, "added_tokens_decoder", {}) or {}).items()}
    special_ids = set(getattr(tok, "all_special_ids", []) or [])
    special_ids |= {int(i) for i, a in (getattr(tok, "added_tokens_decoder", {}) or {}).items()
                    if getattr(a, "special", False)}
    roles = {r: getattr(tok, f"{r}_token_id", None) for r in ROLES}
    backend = getattr(tok, "backend_tokenizer", None) or getattr(tok, "_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        family = family_from_tokenizer_json(json.loads(backend.to_str()))
    elif hasattr(tok, "sp_model"):
        family = Family.SENTENCEPIECE
    else:
        family = Family.OTHER
    source = str(getattr(tok, "name_or_path", "") or type(tok).__name__)
    return _make(tokens, int(tok.vocab_size), roles, special_ids, added, family, source)


def _read_hf_dir(path: Path) -> Vocabulary:
    if (path / TOKENIZER_JSON).is_file():
        return _read_tokenizer_json(path / TOKENIZER_JSON)
    for name in SP_MODEL_NAMES:
        if (path / name).is_file():
            return _read_sentencepiece(path / name)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return _read_gguf(ggufs[0])
    raise FileNotFoundError(f"{path} holds no tokenizer: expected {TOKENIZER_JSON}, one of {SP_MODEL_NAMES} or a "
                            "single .gguf file")


def _sniff_file(path: Path) -> Vocabulary:
    """Dispatch a file on its content (GGUF magic, JSON, SentencePiece protobuf), not only its name."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"GGUF":
        return _read_gguf(path)
    if head[:1] in (b"{", b"[") or path.suffix == ".json":
        try:
            return _read_tokenizer_json(path)
        except (AttributeError, TypeError, KeyError, IndexError) as err:  # JSON, but not shaped like a tokenizer
            raise ValueError(f"{path} is not a readable tokenizer.json ({type(err).__name__}: {err})") from err
    if path.suffix.startswith(".model") or ".model" in path.name:
        return _read_sentencepiece(path)
    raise ValueError(f"unknown tokenizer format: {path} (expected a tokenizer.json, a SentencePiece .model, "
                     "a GGUF file or an HF model directory)")


def load_vocabulary(source: Any) -> Vocabulary:
    """Read a `Vocabulary` from a tokenizer file or folder path, an HF tokenizer object, or a `Vocabulary`."""
    if isinstance(source, Vocabulary):
        return source
    if hasattr(source, "get_vocab") and hasattr(source, "vocab_size"):
        return _read_hf_tokenizer(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"load_vocabulary expects a path, an HF tokenizer or a Vocabulary, got {type(source).__name__}")
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"tokenizer not found: {path} (give a tokenizer.json, a SentencePiece .model, "
                                "a GGUF file or an HF model directory)")
    if path.is_dir():
        return _read_hf_dir(path)
    try:
        return _sniff_file(path)
    except PermissionError as err:
        raise FileNotFoundError(f"tokenizer file {path} is not readable: {err}") from err
