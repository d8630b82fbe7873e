"""crossmodel.io: UTF-8 reading, the cheap safetensors check, stale temporary folders, committed file modes."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from crossmodel import io


def test_read_text_drops_a_bom_and_names_a_non_utf8_file(tmp_path):
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfhello\n")
    assert io.read_text(bom) == "hello\n"
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"ok\ncaf\xe9\n")
    with pytest.raises(ValueError, match=r"data file .*latin1\.txt is not UTF-8 \(byte 0xe9 on line 2\)"):
        io.read_text(latin1, "data file")


def test_check_safetensors_catches_truncation_and_garbage(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(good))
    io.check_safetensors(good, "fix it")  # no error
    data = good.read_bytes()
    for name, content in (("cut", data[:-100]), ("tiny", data[:5]), ("garbage", b"\x10\x00\x00\x00\x00\x00\x00\x00"
                                                                                 + b"not json" * 4)):
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(content)
        with pytest.raises(OSError, match=rf"{name}\.safetensors is truncated or corrupt .*; fix it"):
            io.check_safetensors(bad, "fix it")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_atomic_dir_removes_only_the_temporary_folders_of_dead_writers(tmp_path):
    final = tmp_path / "artefact"
    dead = tmp_path / f".artefact.tmp-{_dead_pid()}-abcd1234.tmp"
    live = tmp_path / f".artefact.tmp-{os.getpid()}-live1234.tmp"
    legacy = tmp_path / ".artefact.old12345.tmp"  # an older crossmodel's name: no pid, left alone by default
    other = tmp_path / f".artefact2.tmp-{_dead_pid()}-abcd1234.tmp"  # another artefact's
    for folder in (dead, live, legacy, other):
        folder.mkdir()
    tmp = io.atomic_dir(final)
    assert not dead.exists() and live.exists() and legacy.exists() and other.exists()
    assert tmp.name.startswith(f".artefact.tmp-{os.getpid()}-")
    assert set(io.remove_stale_tmp(final, all_=True)) == {live, legacy, tmp}


def test_committed_files_get_the_umask_permissions_not_0600(tmp_path):
    final = tmp_path / "artefact"
    tmp = io.atomic_dir(final)
    fd = os.open(tmp / "weights.safetensors", os.O_WRONLY | os.O_CREAT, 0o600)  # as transformers' writer does
    os.close(fd)
    (tmp / "sub").mkdir(mode=0o700)
    (tmp / "sub" / "x.json").write_text("{}")
    os.chmod(tmp / "sub" / "x.json", 0o600)
    io.commit_dir(tmp, final)
    assert (final / "weights.safetensors").stat().st_mode & 0o777 == 0o666 & ~io._UMASK
    assert (final / "sub" / "x.json").stat().st_mode & 0o777 == 0o666 & ~io._UMASK
    assert (final / "sub").stat().st_mode & 0o777 == 0o777 & ~io._UMASK


def test_atomic_directory_commits_on_success_and_leaves_the_old_on_failure(tmp_path):
    final = tmp_path / "artefact"
    with io.atomic_directory(final) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (final / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with io.atomic_directory(final) as tmp:
            (tmp / "a.txt").write_text("half-written")
            raise RuntimeError("killed mid-write")
    assert (final / "a.txt").read_text() == "first"  # the finished artefact is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artefact"]  # no temporary folder left behind


def test_files_fingerprint_follows_content_not_location(tmp_path):
    import shutil

    model = tmp_path / "model"
    model.mkdir()
    save_file({"w": torch.arange(600_000, dtype=torch.float32)}, str(model / "model.safetensors"))  # 2.4 MB: sampled
    (model / "config.json").write_text('{"hidden_size": 8}')
    (model / ".cache").mkdir()
    first = io.files_fingerprint(model)
    shutil.copytree(model, tmp_path / "copy")
    assert io.files_fingerprint(tmp_path / "copy") == first  # a copy elsewhere is the same model
    (model / ".cache" / "x.json").write_text("{}")
    (model / "notes.md").write_text("not a model file")
    assert io.files_fingerprint(model) == first  # hidden folders and other files are not the model
    (model / "config.json").write_text('{"hidden_size": 9}')
    assert io.files_fingerprint(model) != first  # small files are read whole
    (model / "config.json").write_text('{"hidden_size": 8}')
    save_file({"w": torch.arange(600_000, dtype=torch.float32) + 1}, str(model / "model.safetensors"))
    assert io.files_fingerprint(model) != first  # retrained weights of the same shapes: the sampled blocks differ
    assert io.files_fingerprint(model / "model.safetensors") != io.files_fingerprint(tmp_path / "copy" /
                                                                                     "model.safetensors")
    with pytest.raises(FileNotFoundError, match="nothing to fingerprint"):
        io.files_fingerprint(tmp_path / "missing")
