"""The calibration artefact: `CAL/calibration.json`, which `crossmodel calibrate` writes and `--calibration CAL`
reads (in `generate`, `chat`, `eval` and `serve`).

A calibration is a steering strength α chosen for one user model, one delta and one token map (none for a delta
in the model's own vocabulary). It records their fingerprints (`crossmodel.io.files_fingerprint` of the delta and
map folders, `crossmodel.models.model_fingerprint` of the model), and `load_calibration` refuses it for any
other model, delta or map, naming the one that differs. The fields are listed in docs/STEERING.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from crossmodel import __version__
from crossmodel.io import files_fingerprint, read_text
from crossmodel.steer.delta import check_alpha

SCHEMA_VERSION = 1
CALIBRATION_FILE = "calibration.json"
KINDS = ("model", "delta", "map")  # what a calibration is for, in the order they are checked


@dataclass(frozen=True)
class Calibration:
    """A loaded calibration: the chosen α, the one-line reason, where it was read from, and the whole record."""

    path: Path  # the calibration.json file
    alpha: float
    reason: str
    record: dict[str, Any]


def calibration_file(path: str | Path) -> Path:
    """The calibration.json of a `crossmodel calibrate --out` folder (a .json file is taken as it is)."""
    path = Path(path)
    return path if path.suffix == ".json" else path / CALIBRATION_FILE


def _no_map(token_map: str | Path | None) -> bool:
    return token_map is None or str(token_map) in ("", "-")


def _fingerprint(path: str | Path, flag: str) -> str:
    if not Path(path).exists():
        raise FileNotFoundError(f"{flag} {path} not found")
    return files_fingerprint(path)


def fingerprints(model: str, delta: str | Path, token_map: str | Path | None = None) -> dict[str, Any]:
    """What a calibration is for: {"model": {"spec", "fingerprint"}, "delta": {"path", "fingerprint"}, "map":
    {"path", "fingerprint"} or None (a delta in the model's own vocabulary; "-" means the same)}."""
    from crossmodel.models.load import model_fingerprint

    found: dict[str, Any] = {"model": {"spec": str(model), "fingerprint": model_fingerprint(model)},
                             "delta": {"path": str(delta), "fingerprint": _fingerprint(delta, "--delta")},
                             "map": None}
    if not _no_map(token_map):
        found["map"] = {"path": str(token_map), "fingerprint": _fingerprint(token_map, "--map")}
    return found


def read_calibration(path: str | Path) -> Calibration:
    """Read CAL/calibration.json without checking what it is for; one error naming the file when it is missing,
    malformed or from a newer crossmodel."""
    file = calibration_file(path)
    if not file.is_file():
        raise FileNotFoundError(f"calibration {file} not found; make one with `crossmodel calibrate --model M "
                                f"--delta D --data DEV --out {Path(path)}`")
    try:
        record = json.loads(read_text(file, "calibration"))
        version = record["schema_version"]
        alpha = check_alpha(record["alpha"], f"{file}: alpha")
        reason = str(record.get("reason", ""))
        for kind in KINDS:
            if kind not in record:
                raise KeyError(kind)
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{file} is not a crossmodel calibration ({type(err).__name__}: {err}); make it again with "
                         "`crossmodel calibrate`") from None
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(f"{file}: schema_version {version!r} is not supported by crossmodel {__version__} (knows "
                         f"up to {SCHEMA_VERSION}); upgrade crossmodel")
    return Calibration(file, alpha, reason, record)


def _named(entry: dict[str, Any] | None, kind: str) -> str:
    if entry is None:
        return "no map (the delta in the model's own vocabulary)"
    return f"{kind} {entry.get('spec') or entry.get('path')} (fingerprint {str(entry.get('fingerprint'))[:12]})"


def mismatch(recorded: dict[str, Any], found: dict[str, Any]) -> str | None:
    """The first of model, delta and map whose fingerprint differs between a calibration's record and `found`
    (`fingerprints(...)`), as "made for X, not Y"; None when all three match."""
    for kind in KINDS:
        theirs, ours = recorded.get(kind), found.get(kind)
        if (theirs or {}).get("fingerprint") != (ours or {}).get("fingerprint"):
            return f"was made for {_named(theirs, kind)}, not {_named(ours, kind)}"
    return None


def load_calibration(path: str | Path, model: str, delta: str | Path,
                     token_map: str | Path | None = None) -> Calibration:
    """CAL/calibration.json, checked to be for exactly this model, delta and token map (None or "-": the delta in
    the model's own vocabulary); otherwise one ValueError naming what differs and what to run."""
    calibration = read_calibration(path)
    found = fingerprints(model, delta, token_map)
    differs = mismatch(calibration.record, found)
    if differs:
        map_flag = "" if found["map"] is None else f" --map {token_map}"
        raise ValueError(f"calibration {path} {differs}; run `crossmodel calibrate --model {model} --delta {delta}"
                         f"{map_flag} --data DEV --out NEW_CAL` for these and pass --calibration NEW_CAL")
    return calibration


def check_calibration_flags(deltas: Sequence[str], alphas: Sequence[float]) -> None:
    """--calibration sets the α of exactly one --delta, so it is refused with --alpha or with other --delta
    counts."""
    if alphas:
        raise ValueError("give --alpha or --calibration, not both: a calibration sets α itself")
    if len(deltas) != 1:
        raise ValueError(f"--calibration sets the α of one delta; give exactly one --delta (got {len(deltas)})")


def calibrated_alphas(calibration: str | Path | None, model: str, deltas: Sequence[str], alphas: Sequence[float],
                      maps: Sequence[str] = ()) -> tuple[float, ...]:
    """The --alpha values a command steers with: as given without a calibration, else the α of CAL (checked
    against the model, the one --delta and its --map)."""
    if calibration is None:
        return tuple(alphas)
    check_calibration_flags(deltas, alphas)
    return (load_calibration(calibration, model, deltas[0], maps[0] if maps else None).alpha,)
