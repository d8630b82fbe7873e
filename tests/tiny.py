"""The one factory of tiny random-weight Llama models the tests build (each stage keeps its own tiny tokenizer:
they differ on purpose in vocabulary, special tokens and BOS handling)."""

from __future__ import annotations

from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(vocab_size: int, *, hidden: int = 32, layers: int = 2, context: int = 256, seed: int = 0,
               tokenizer: Any = None, sharpen: float = 1.0, **config: Any) -> LlamaForCausalLM:
    """A Llama with 4 attention heads (2 KV heads) and an MLP twice `hidden`, in eval mode, seeded; special ids
    from `tokenizer` when given (then from `config`); the head scaled by `sharpen` (sharper logits, so greedy
    paths are not near-ties)."""
    ids = {} if tokenizer is None else {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
                                        "pad_token_id": tokenizer.pad_token_id}
    cfg = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=context, **{**ids, **config})
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    if sharpen != 1.0:
        with torch.no_grad():
            model.lm_head.weight.mul_(sharpen)
    return model
