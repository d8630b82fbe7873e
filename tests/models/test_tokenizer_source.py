"""`crossmodel map` takes what `generate` and `eval` take — zoo names and HF model directories — and sizes the map
to the model's logits width, not to its tokenizer (Qwen pads its rows, Gemma-3 has one token more than rows)."""

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from typer.testing import CliRunner

from crossmodel.cli import app
from crossmodel.models.load import tokenizer_source

from .models_fixtures import make_tokenizer


@pytest.fixture(scope="module")
def padded_dir(tmp_path_factory):
    """An HF model directory whose model has 7 more logits rows than its tokenizer has tokens."""
    folder = tmp_path_factory.mktemp("padded")
    tok = make_tokenizer(chat=False)
    config = LlamaConfig(vocab_size=len(tok) + 7, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder, len(tok)


def test_tokenizer_source_reads_the_model_width(padded_dir, tmp_path):
    folder, tokens = padded_dir
    assert tokenizer_source(str(folder)) == (str(folder), tokens + 7)
    tokenizer_file = tmp_path / "tokenizer.json"
    tokenizer_file.write_text((folder / "tokenizer.json").read_text())
    assert tokenizer_source(str(tokenizer_file)) == (str(tokenizer_file), None)  # a bare tokenizer: no model width


def test_map_command_sizes_the_map_to_the_models(padded_dir, tmp_path):
    folder, tokens = padded_dir
    result = CliRunner().invoke(app, ["map", "--user", str(folder), "--delta", str(folder), "--out",
                                      str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "m" / "token_map.json").read_text())
    assert (meta["user_rows"], meta["delta_rows"]) == (tokens + 7, tokens + 7)


@pytest.mark.slow
def test_map_command_takes_zoo_names(tmp_path):
    result = CliRunner().invoke(app, ["map", "--user", "gemma-3-270m", "--delta", "smollm2-135m-instruct",
                                      "--mode", "normalized", "--out", str(tmp_path / "g2s")])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "g2s" / "token_map.json").read_text())
    assert (meta["user_rows"], meta["delta_rows"]) == (262144, 49152)
