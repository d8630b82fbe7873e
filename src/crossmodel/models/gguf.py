"""GGUF files in transformers: load one (dequantized), and convert it once into an ordinary HF directory.

transformers dequantizes GGUF weights on load (slow: 15-50 s) and refuses `save_pretrained` on the result while
the model still carries its GGUF quantization config. The weights are already plain tensors by then, so we
strip that config the way transformers' own `dequantize()` does and save safetensors; reloading takes < 1 s.
"""

from __future__ import annotations

import struct
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase


def load_gguf(path: str | Path, *, dtype: torch.dtype = torch.float32
              ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a GGUF file as an HF causal LM (dequantized to `dtype`) and its tokenizer."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    except (ValueError, OSError, KeyError, IndexError, EOFError, struct.error) as err:  # e.g. in numpy, struct
        first = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"{path} could not be read as a GGUF model ({type(err).__name__}: {first}); it is truncated, "
                         "damaged or of an unsupported architecture: download it again (a zoo model: "
                         "`crossmodel zoo pull NAME --force`)") from err
    return model.eval(), tokenizer


def convert_gguf(path: str | Path, out_dir: str | Path, *, dtype: torch.dtype = torch.float32) -> None:
    """Write the GGUF model at `path` into `out_dir` as an HF directory.

    The directory gets `config.json`, `model.safetensors` (weights in `dtype`; tied embeddings stay tied),
    `generation_config.json`, `tokenizer.json` + `tokenizer_config.json` and, when the GGUF has one,
    `chat_template.jinja`.
    """
    model, tokenizer = load_gguf(path)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:  # drops config.quantization_config; the weights are already dequantized
        quantizer.remove_quantization_config(model)
    model.to(dtype)
    model.config.dtype = dtype
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
