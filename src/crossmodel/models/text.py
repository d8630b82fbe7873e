"""Plain text generation with one model: the prompt (optionally through the chat template) and a greedy or
sampled continuation. Steered generation with deltas lives in `crossmodel.steer`."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def chat_prompt(tokenizer: PreTrainedTokenizerBase, text: str, *, system: str | None = None) -> str:
    """`text` as one user turn through the tokenizer's chat template, ending with the assistant's cue.

    ValueError when the tokenizer has no chat template (base models such as gemma-3-270m).
    """
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", "") or "this model"
        raise ValueError(f"{name} has no chat template (it is a base model): give a plain prompt without "
                         f"--chat / chat=True, or use an instruct model such as smollm2-135m-instruct")
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@torch.no_grad()
def generate_text(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str, *, chat: bool = False,
                  max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0) -> str:
    """The model's continuation of `prompt` (new text only). temperature 0 = greedy."""
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    text = chat_prompt(tokenizer, prompt) if chat else prompt
    # a chat template writes its own BOS where the model wants one; a plain prompt gets the tokenizer's
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=not chat).to(model.device)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    torch.manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=pad, **sampling)
    return tokenizer.decode(out[0, batch["input_ids"].shape[1]:], skip_special_tokens=True)
