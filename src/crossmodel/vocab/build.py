"""The map-building job behind `crossmodel map`: config -> tokenizers -> TokenMap + a coverage report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossmodel.vocab.cross_family import FALLBACKS
from crossmodel.vocab.fetch import KNOWN_TOKENIZERS, fetch_tokenizer
from crossmodel.vocab.map_modes import MAPPERS
from crossmodel.vocab.reference_io import export_reference
from crossmodel.vocab.token_map import REDUCTIONS, TokenMap
from crossmodel.vocab.vocabulary import Vocabulary, load_vocabulary

# options each mode takes (the rest of MapConfig is ignored for that mode)
MODE_OPTIONS = {"cmc": (), "normalized": ("fallback",), "one-to-many": ("max_pieces", "decay", "reduce")}


@dataclass(frozen=True)
class MapConfig:
    """What to map: tokenizers (a path or a name in KNOWN_TOKENIZERS), the mode and its options."""

    user: str
    delta: str
    mode: str = field(default="cmc", metadata={"help": "cmc (reference PM-MinED) | normalized | one-to-many"})
    user_rows: int | None = field(default=None, metadata={"help": "user model logits width (default: vocab)"})
    delta_rows: int | None = field(default=None, metadata={"help": "delta model logits width (default: vocab)"})
    fallback: str = field(default="none", metadata={"help": "normalized: none | first_byte | unk"})
    max_pieces: int = field(default=4, metadata={"help": "one-to-many: delta pieces kept per user token"})
    decay: float = field(default=0.5, metadata={"help": "one-to-many: weight of piece i is decay**i"})
    reduce: str = field(default="max", metadata={"help": "one-to-many: max | logsumexp | weighted_sum"})

    def __post_init__(self) -> None:
        if self.mode not in MAPPERS:
            raise ValueError(f"mode={self.mode!r} is not one of {sorted(MAPPERS)}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback={self.fallback!r} is not one of {FALLBACKS}")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"reduce={self.reduce!r} is not one of {REDUCTIONS}")
        for name in ("user_rows", "delta_rows"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be a positive logits width")

    def options(self) -> dict[str, Any]:
        """The mode-specific keyword options for `TokenMap.build`."""
        return {k: getattr(self, k) for k in MODE_OPTIONS[self.mode]}


@dataclass
class MapReport:
    """Coverage of a built map, with timings and examples of unmapped user tokens."""

    coverage: dict[str, Any]
    load_seconds: float
    build_seconds: float
    unmapped_examples: list[tuple[int, str]]
    user: str
    delta: str


def resolve_tokenizer(spec: str | Path) -> Vocabulary:
    """A tokenizer path, or a name from KNOWN_TOKENIZERS (fetched from its registry and cached)."""
    if not Path(spec).expanduser().exists() and str(spec) in KNOWN_TOKENIZERS:
        return load_vocabulary(fetch_tokenizer(str(spec)))
    if not Path(spec).expanduser().exists():
        raise FileNotFoundError(f"tokenizer {spec!r} is neither an existing path nor a known name "
                                f"({', '.join(sorted(KNOWN_TOKENIZERS))})")
    return load_vocabulary(spec)


def make_map(config: MapConfig, out: str | Path | None = None, export_prefix: str | Path | None = None,
             examples: int = 10) -> tuple[TokenMap, MapReport]:
    """Load both tokenizers, build the map, save it to `out` (and the reference triple), report its coverage."""
    start = time.perf_counter()
    user, delta = resolve_tokenizer(config.user), resolve_tokenizer(config.delta)
    loaded = time.perf_counter()
    token_map = TokenMap.build(user, delta, mode=config.mode, user_rows=config.user_rows,
                               delta_rows=config.delta_rows, **config.options())
    built = time.perf_counter()
    if out is not None:
        token_map.save(out)
    if export_prefix is not None:
        export_reference(token_map, export_prefix, user, delta)
    rows = min(token_map.user_rows, len(user.tokens))
    unmapped = (token_map.ids[:rows] < 0).nonzero().flatten()[:examples].tolist()
    report = MapReport(coverage=token_map.coverage(), load_seconds=loaded - start, build_seconds=built - loaded,
                       unmapped_examples=[(i, user.tokens[i]) for i in unmapped],
                       user=f"{user.source} ({len(user.tokens)} tokens, {user.family.value})",
                       delta=f"{delta.source} ({len(delta.tokens)} tokens, {delta.family.value})")
    return token_map, report
