"""The zoo table is data: check it is complete and self-consistent (names, pins, hashes, members)."""

from __future__ import annotations

import re

import pytest
import torch

from crossmodel.models import ZOO, zoo_dir, zoo_entry

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def test_the_four_models_of_the_issue():
    assert list(ZOO) == ["smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct",
                         "qwen2.5-coder-1.5b-instruct"]
    assert {e.kind for e in ZOO.values()} == {"instruct", "base"} and ZOO["gemma-3-270m"].kind == "base"


@pytest.mark.parametrize("name", list(ZOO))
def test_entry_recipe_is_pinned_and_hashed(name):
    entry = ZOO[name]
    assert entry.name == name and SHA256.match(entry.gguf_sha256) and entry.gguf_file.endswith(".gguf")
    assert entry.parts and len({p.requirement for p in entry.parts}) == len(entry.parts)
    for part in entry.parts:
        package, version = part.requirement.split("==")
        assert SHA256.match(part.sha256) and version
        assert part.wheel.startswith(package.replace("-", "_") + "-" + version + "-")
        assert part.member.startswith(package.replace("-", "_") + "/")  # the member lives in that package


def test_chunk_numbering():
    gemma = [p.member.rsplit(".", 1)[1] for p in ZOO["gemma-3-270m"].parts]
    assert gemma == ["part00", "part01", "part02", "part03"]
    qwen = [p.member for p in ZOO["qwen2.5-coder-1.5b-instruct"].parts]
    assert len(qwen) == 22 and qwen[0].endswith("/data/part01.bin") and qwen[-1].endswith("/data/part22.bin")
    assert len(ZOO["qwen2.5-coder-0.5b-instruct"].parts) == 6


def test_zoo_dir_layout(tmp_path):
    assert zoo_dir("gemma-3-270m", tmp_path) == tmp_path / "zoo" / "gemma-3-270m"
    assert zoo_dir("gemma-3-270m", tmp_path, torch.float16) == tmp_path / "zoo" / "gemma-3-270m-float16"
    with pytest.raises(ValueError, match="known: smollm2-135m-instruct, gemma-3-270m"):
        zoo_entry("gemma")
