"""A damaged model directory gets one error naming the file and the repair (a zoo copy: re-pull it)."""

from __future__ import annotations

import json
import shutil

import pytest

from crossmodel.models import load_model, load_tokenizer


def test_truncated_weights_of_a_zoo_copy_say_how_to_repull(tiny_dir, tmp_path):
    copy = tmp_path / "smollm2-135m-instruct"
    shutil.copytree(tiny_dir, copy)
    (copy / "zoo.json").write_text(json.dumps({"name": "smollm2-135m-instruct", "files": {}}))
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(OSError, match=r"model\.safetensors is truncated or corrupt .*"
                                      r"`crossmodel zoo pull smollm2-135m-instruct --force`"):
        load_model(copy)


def test_broken_config_and_tokenizer_name_the_directory(tiny_dir, tmp_path):
    copy = tmp_path / "m"
    shutil.copytree(tiny_dir, copy)
    (copy / "config.json").write_text('{"model_type": "llama", "hidden_')
    with pytest.raises(OSError, match=rf"could not load the model in {copy}.*save_pretrained"):
        load_model(copy)
    shutil.copy(tiny_dir / "config.json", copy / "config.json")
    (copy / "tokenizer.json").write_text("{")
    with pytest.raises(ValueError, match=rf"tokenizer files in {copy} .*tokenizer\.json"):
        load_tokenizer(copy)


@pytest.mark.parametrize("content", [b"", b"GGUF\x03\x00\x00\x00", b"GGUF\x03\x00\x00\x00" + b"\x00" * 40])
def test_a_damaged_gguf_file_is_named(tmp_path, content):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(content)
    with pytest.raises(ValueError, match=rf"{gguf} could not be read as a GGUF model .*download it again"):
        load_model(gguf)
