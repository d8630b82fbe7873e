"""Small shared I/O helpers: atomic writes, the cache root, and fetching files from package registries.

Every stage may import this module; it imports nothing from crossmodel but the version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

CACHE_ENV = "CROSSMODEL_HOME"
_UMASK = os.umask(0)
os.umask(_UMASK)


def cache_home(root: str | os.PathLike | None = None) -> Path:
    """The cache root: `root` if given, else $CROSSMODEL_HOME, else ~/.cache/crossmodel."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "crossmodel").expanduser()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON with sorted keys, atomically."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_dir(final: str | os.PathLike) -> Path:
    """A fresh temporary sibling folder of `final`; fill it, then call `commit_dir(tmp, final)`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp creates 0700; the committed folder gets ordinary permissions
    return tmp


def commit_dir(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move a filled temporary folder into place, replacing any previous `final`."""
    final = Path(final)
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def pip_download(requirement: str, dest: str | os.PathLike, *, source: bool = False) -> Path:
    """Download one package file (no dependencies) from the package index into `dest`; return its path.

    `source=True` asks for the sdist. Raises RuntimeError with pip's own message when the index cannot be
    reached or the package does not exist.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.iterdir())
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", "-d", str(dest), requirement]
    if source:
        cmd[5:5] = ["--no-binary", ":all:"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`pip download {requirement}` failed (is the package index reachable?):\n"
                           f"{done.stderr.strip()[-2000:]}")
    new = [p for p in dest.iterdir() if p not in before and not p.name.startswith(".")]
    if new:
        return new[0]
    name = requirement.split("==")[0].replace("-", "_").lower()
    for p in dest.iterdir():  # already there from an earlier download
        if p.name.replace("-", "_").lower().startswith(name):
            return p
    raise RuntimeError(f"`pip download {requirement}` reported success but wrote no file into {dest}")


def npm_pack(spec: str, dest: str | os.PathLike) -> Path:
    """Download one npm package tarball (`name@version`) into `dest` with `npm pack`; return its path."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if shutil.which("npm") is None:
        raise RuntimeError(f"npm is needed to fetch {spec!r} but was not found on PATH")
    done = subprocess.run(["npm", "pack", spec, "--silent", "--pack-destination", str(dest)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`npm pack {spec}` failed (is the npm registry reachable?):\n{done.stderr[-2000:]}")
    return dest / done.stdout.strip().splitlines()[-1]
