"""load_model / load_tokenizer / resolve on tiny local models, the hub failure message, and plain generation."""

from __future__ import annotations

import json

import pytest
import torch
from .models_fixtures import save_tiny_model

import crossmodel.models.load as load_mod
from crossmodel.models import ZOO, LoadedModel, Source, chat_prompt, generate_text, load_model, load_tokenizer, resolve
from crossmodel.vocab import load_vocabulary


def test_load_model_from_hf_dir(tiny_dir):
    loaded = load_model(tiny_dir)
    assert isinstance(loaded, LoadedModel) and loaded.path == tiny_dir and loaded.name == str(tiny_dir)
    assert not loaded.model.training
    assert loaded.fingerprint == load_vocabulary(loaded.tokenizer).fingerprint
    assert loaded.model.lm_head.weight.data_ptr() == loaded.model.model.embed_tokens.weight.data_ptr()  # tied
    ids = loaded.tokenizer("The capital of France", return_tensors="pt").input_ids
    assert loaded.model(ids).logits.shape == (1, ids.shape[1], len(loaded.tokenizer))


def test_load_tokenizer_fingerprint_tells_tokenizers_apart(tiny_dir, tiny_base_dir, tmp_path):
    tokenizer, fp = load_tokenizer(tiny_dir)
    assert fp == load_model(tiny_dir).fingerprint
    assert load_tokenizer(tiny_base_dir)[1] == fp  # same pieces and specials; the chat template is not hashed
    other = save_tiny_model(tmp_path / "other", chat=True)
    spec = json.loads((other / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = spec["model"]["vocab"]
    a, b = sorted(vocab)[100:102]
    vocab[a], vocab[b] = vocab[b], vocab[a]  # two pieces swap ids
    (other / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
    assert load_tokenizer(other)[1] != fp


def test_dtype_and_device_are_applied(tiny_dir):
    loaded = load_model(tiny_dir, dtype=torch.bfloat16, device="cpu")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert loaded.model.device.type == "cpu"


def test_resolve_kinds(tiny_dir, tmp_path):
    assert resolve("smollm2-135m-instruct") == (Source.ZOO, "smollm2-135m-instruct")
    assert resolve(tiny_dir) == (Source.HF_DIR, tiny_dir)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve(gguf) == (Source.GGUF, gguf)
    assert resolve(tmp_path) == (Source.GGUF, gguf)  # a folder holding exactly one .gguf
    assert resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == (Source.HUB, "HuggingFaceTB/SmolLM2-135M-Instruct")


def test_resolve_errors_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        resolve(str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="nothere.gguf"):
        resolve("nothere.gguf")
    with pytest.raises(ValueError, match="not a zoo name.*" + ".*".join(ZOO)):
        resolve("smollm-135m")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="not a .gguf"):
        resolve(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="no config.json"):
        resolve(tmp_path)


def test_unreachable_hub_gives_a_clear_message(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(load_mod.AutoModelForCausalLM, "from_pretrained", offline)
    with pytest.raises(OSError, match=r"could not load 'some-org/some-model' from the Hugging Face hub.*zoo"):
        load_model("some-org/some-model")


def test_chat_prompt_uses_the_template(tiny_dir, tiny_base_dir):
    tokenizer, _ = load_tokenizer(tiny_dir)
    text = chat_prompt(tokenizer, "Where is Rome?")
    assert text == "<|im_start|>user\nWhere is Rome?<|im_end|>\n<|im_start|>assistant\n"
    base, _ = load_tokenizer(tiny_base_dir)
    plain = chat_prompt(base, "Where is Rome?")  # a base model reads the plain format, BOS as its tokenizer adds it
    assert plain.endswith("Question: Where is Rome?\nAnswer:")
    assert base(plain, add_special_tokens=False).input_ids == base("Question: Where is Rome?\nAnswer:").input_ids


def test_generate_text_greedy_matches_generate(tiny_dir):
    loaded = load_model(tiny_dir)
    text = generate_text(loaded.model, loaded.tokenizer, "The capital of", max_new_tokens=5)
    ids = loaded.tokenizer("The capital of", return_tensors="pt").input_ids
    manual = ids
    for _ in range(5):  # greedy by hand
        nxt = loaded.model(manual).logits[0, -1].argmax()
        manual = torch.cat([manual, nxt.view(1, 1)], dim=1)
        if nxt.item() == loaded.tokenizer.eos_token_id:
            break
    assert text == loaded.tokenizer.decode(manual[0, ids.shape[1]:], skip_special_tokens=True)
    sampled = [generate_text(loaded.model, loaded.tokenizer, "The", max_new_tokens=8, temperature=1.0, seed=s)
               for s in (1, 1)]
    assert sampled[0] == sampled[1]  # seeded


def test_generate_text_rejects_bad_arguments(tiny_dir):
    loaded = load_model(tiny_dir)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_text(loaded.model, loaded.tokenizer, "x", max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        generate_text(loaded.model, loaded.tokenizer, "x", temperature=-1.0)
