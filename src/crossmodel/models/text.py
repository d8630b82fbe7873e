"""Plain text generation with one model: the prompt (optionally in its chat format) and a greedy or sampled
continuation. Steered generation with deltas lives in `crossmodel.steer`."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from crossmodel.models.batch import pad_id
from crossmodel.models.prompt import chat_prompt


@torch.no_grad()
def generate_text(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str, *, chat: bool = False,
                  max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0) -> str:
    """The model's continuation of `prompt` (new text only). temperature 0 = greedy."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    text = chat_prompt(tokenizer, prompt) if chat else prompt
    # a rendered chat prompt carries its own BOS where the model wants one; a plain prompt gets the tokenizer's
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=not chat).to(model.device)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    torch.manual_seed(seed)
    out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=pad_id(tokenizer), **sampling)
    return tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
