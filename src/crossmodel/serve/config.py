"""What a steered vLLM server hosts, and what one request asks for (docs/SERVING.md).

`ServeConfig` names the deltas a server hosts (NAME -> delta directory, optional token map); it travels to
vLLM's processes as JSON in one environment variable, because vLLM builds the logits processor itself (in its
engine process) and calls `validate_params` as a classmethod (in its API process): neither gets arguments of
ours. A request asks for a delta with `SamplingParams.extra_args` (the REST field `vllm_xargs`):
`{"delta": "NAME", "alpha": 1.0}`; `delta_request` checks it and names the bad value.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from crossmodel.steer.delta import check_alpha

ENV_VAR = "CROSSMODEL_SERVE"  # the JSON ServeConfig read by the processor in every vLLM process
DELTA_KEY, ALPHA_KEY = "delta", "alpha"  # the request's vllm_xargs keys
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ServedDelta:
    """One hosted delta: the name requests use, its directory, its token map directory when its vocabulary is
    not the served model's (None: the same vocabulary), and its default strength for requests that give none
    (None: the delta's saved default; `crossmodel serve --calibration NAME=CAL` sets it)."""

    name: str
    path: str
    token_map: str | None = None
    alpha: float | None = None

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise ValueError(f"delta name {self.name!r} must be letters, digits, '_', '.' or '-' (e.g. facts)")
        if self.alpha is not None:
            check_alpha(self.alpha, f"the default alpha of delta {self.name}")


@dataclass(frozen=True)
class ServeConfig:
    """The deltas a server hosts, and the logit given to user tokens a token map leaves unmapped."""

    deltas: tuple[ServedDelta, ...] = ()
    fill: float = 0.0  # as steer's SteerConfig.fill: 0 as in the reference

    def __post_init__(self):
        names = [d.name for d in self.deltas]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"delta names {twice} are given twice; give every --delta its own NAME")
        if not math.isfinite(self.fill):
            raise ValueError(f"fill={self.fill} must be finite (alpha * inf is undefined at alpha=0)")

    @property
    def names(self) -> list[str]:
        """The hosted delta names, in the order given."""
        return [d.name for d in self.deltas]

    def to_json(self) -> str:
        """This config as one line of JSON (the value of ENV_VAR)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServeConfig:
        """Parse `to_json`'s output; a ValueError says what is malformed."""
        try:
            raw = json.loads(text)
            return cls(deltas=tuple(ServedDelta(**d) for d in raw["deltas"]), fill=float(raw.get("fill", 0.0)))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{ENV_VAR} does not hold a crossmodel serve config ({err}); start the server with "
                             "`crossmodel serve` or build the LLM with crossmodel.serve.steered_llm") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServeConfig:
        """The config in `environ[ENV_VAR]`; a ValueError says how to start a server that has one."""
        if ENV_VAR not in environ:
            raise ValueError(f"{ENV_VAR} is not set, so the crossmodel logits processor hosts no delta; start the "
                             "server with `crossmodel serve --delta NAME=DIR` or build the LLM with "
                             "crossmodel.serve.steered_llm")
        return cls.from_json(environ[ENV_VAR])


def named_paths(flag: str, values: Sequence[str]) -> dict[str, str]:
    """{NAME: PATH} from repeated `NAME=PATH` flag values; the error names the flag and the bad value."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag} {value!r} must be NAME=DIR (e.g. {flag} facts=runs/sft/delta)")
        if name in out:
            raise ValueError(f"{flag} names {name!r} twice")
        out[name] = path
    return out


def serve_config(deltas: Mapping[str, str | Path], maps: Mapping[str, str | Path] | None = None,
                 fill: float = 0.0, alphas: Mapping[str, float] | None = None) -> ServeConfig:
    """A ServeConfig from {NAME: delta dir}, {NAME: token map dir} and {NAME: default alpha}; every path must
    exist."""
    maps, alphas = dict(maps or {}), dict(alphas or {})
    for flag, named in (("--map", maps), ("--calibration", alphas)):
        stray = sorted(set(named) - set(deltas))
        if stray:
            raise ValueError(f"{flag} names {stray} that no --delta hosts (hosted: {sorted(deltas)})")
    entries = []
    for name, path in deltas.items():
        for what, where in (("--delta", path), ("--map", maps.get(name))):
            if where is not None and not Path(where).is_dir():
                raise FileNotFoundError(f"{what} {name}={where}: no such directory")
        entries.append(ServedDelta(name, str(Path(path).resolve()),
                                   str(Path(maps[name]).resolve()) if name in maps else None, alphas.get(name)))
    return ServeConfig(tuple(entries), fill)


@dataclass(frozen=True)
class DeltaRequest:
    """What one request asks for: a hosted delta by name, and its strength (None: the delta's saved default)."""

    name: str
    alpha: float | None = None


def delta_request(extra_args: Mapping[str, Any] | None, hosted: Sequence[str]) -> DeltaRequest | None:
    """The delta a request's extra_args (vllm_xargs) ask for, None when they ask for none; ValueError naming
    the bad value otherwise (vLLM turns it into HTTP 400)."""
    args = dict(extra_args or {})
    if DELTA_KEY not in args:
        if ALPHA_KEY in args:
            raise ValueError(f"vllm_xargs has {ALPHA_KEY!r} but no {DELTA_KEY!r}: name the delta to apply, e.g. "
                             f'{{"{DELTA_KEY}": "{hosted[0] if hosted else "NAME"}", "{ALPHA_KEY}": 1.0}}')
        return None
    name = args[DELTA_KEY]
    if not isinstance(name, str) or name not in hosted:
        raise ValueError(f"vllm_xargs {DELTA_KEY}={name!r} is not a delta this server hosts; choose one of "
                         f"{list(hosted)}")
    alpha = args.get(ALPHA_KEY)
    if alpha is None:
        return DeltaRequest(name)
    try:
        if isinstance(alpha, bool):  # JSON true would pass float() as 1.0
            raise TypeError
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"vllm_xargs {ALPHA_KEY}={alpha!r} must be a number (e.g. 1.0)") from None
    return DeltaRequest(name, check_alpha(value, f"vllm_xargs {ALPHA_KEY}"))
