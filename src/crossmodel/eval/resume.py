"""Resumable evaluation runs: every finished part of a run is on disk, so a re-run with the same `--out` skips it.

A run directory holds `run.json` (the resolved configuration), one `<part>.json` per finished part (a TOFU
split, a QA file) and, while a part is in progress, `<part>.partial.json` with the records done so far. All
writes are atomic (temp file + rename), so an interrupted run never leaves a half-written file behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from tqdm.auto import tqdm

from crossmodel.io import atomic_write_json

RUN_FILE = "run.json"
T = TypeVar("T")


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it to recompute that part") from None


def read_run(out_dir: str | Path) -> dict[str, Any]:
    """The configuration recorded in `out_dir`/run.json."""
    return _read(Path(out_dir) / RUN_FILE)


def check_run(out_dir: str | Path, config: dict[str, Any]) -> None:
    """Refuse `out_dir` when it holds a run with another configuration, naming each changed key (writes nothing)."""
    path = Path(out_dir) / RUN_FILE
    if path.is_file():
        previous, config = _read(path), json.loads(json.dumps(config))  # tuples compare as the lists on disk
        changed = [f"{k}: {previous.get(k)!r} -> {config.get(k)!r}" for k in sorted(set(previous) | set(config))
                   if previous.get(k) != config.get(k)]
        if changed:
            raise ValueError(f"{out_dir} holds a run with a different configuration ({'; '.join(changed)}); pass a "
                             "new --out, or delete the folder to start over")


def start_run(out_dir: str | Path, config: dict[str, Any]) -> Path:
    """Create `out_dir` and record `config` there; a directory holding a run with another config is refused."""
    check_run(out_dir, config)
    out = Path(out_dir)
    if not (out / RUN_FILE).is_file():
        atomic_write_json(out / RUN_FILE, config)
    return out


def load_part(out_dir: str | Path, part: str) -> dict[str, Any] | None:
    """The finished part `part` of a run, or None if it has not finished."""
    path = Path(out_dir) / f"{part}.json"
    return _read(path) if path.is_file() else None


def save_part(out_dir: str | Path, part: str, result: dict[str, Any]) -> None:
    """Write a finished part and drop its partial records."""
    atomic_write_json(Path(out_dir) / f"{part}.json", result)
    (Path(out_dir) / f"{part}.partial.json").unlink(missing_ok=True)


def process(out_dir: str | Path, part: str, items: Sequence[T], fn: Callable[[list[T]], list[dict]],
            batch_size: int) -> list[dict]:
    """Records `fn(batch)` for all `items`, in batches, with a progress bar, checkpointed after every batch to
    `<part>.partial.json` and resumed from it."""
    path = Path(out_dir) / f"{part}.partial.json"
    records: list[dict] = _read(path)["records"] if path.is_file() else []
    if len(records) > len(items):
        raise ValueError(f"{path} holds {len(records)} records but the part has only {len(items)} items; "
                         "delete it to recompute that part")
    with tqdm(total=len(items), initial=len(records), desc=part, unit="item") as bar:
        for start in range(len(records), len(items), batch_size):
            batch = list(items[start: start + batch_size])
            done = fn(batch)
            if len(done) != len(batch):
                raise RuntimeError(f"{part}: {len(batch)} items gave {len(done)} records")
            records.extend(done)
            atomic_write_json(path, {"records": records})
            bar.update(len(batch))
    return records
