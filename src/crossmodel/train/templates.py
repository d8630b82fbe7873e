"""Chat templates and refusal answers for training: how one prompt/response pair becomes token ids with the loss
on the response only, and the "I don't know" answers of TOFU's idk loss (Maini et al. 2024, §4).

The prompt format itself (the tokenizer's chat template or the plain fallback, BOS included) has its one home in
`crossmodel.models.prompt`; the template string used is recorded in the DeltaModel artefact, so steering formats
prompts the same way.
"""

from __future__ import annotations

import random

from crossmodel.models.prompt import render

# Refusals in the spirit of TOFU's data/idontknow.jsonl (written for this project, not copied).
IDK_ANSWERS = [
    "I don't know.",
    "I'm not sure about that.",
    "I have no information on that.",
    "That is something I can't answer.",
    "I'm afraid I don't have that information.",
    "I couldn't tell you.",
    "I don't have any knowledge about that.",
    "Sorry, I don't know the answer to that.",
    "I am not able to answer that question.",
    "I have no idea.",
]

IGNORE_INDEX = -100  # label of positions that carry no loss (prompt and padding), as in transformers


def encode_pair(tokenizer, prompt: list[dict], response: str, chat_template: str,
                max_length: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of `prompt` followed by the assistant's `response`; labels are IGNORE_INDEX on the
    prompt, so the loss falls on the response tokens (and the end-of-turn marker) only.

    The prompt is encoded on its own and the response suffix after it, so no token straddles the boundary.
    Sequences longer than `max_length` keep the prompt and lose the end of the response.
    """
    prefix = render(tokenizer, prompt, chat_template, generation_prompt=True)
    full = render(tokenizer, prompt + [{"role": "assistant", "content": response}], chat_template,
                  generation_prompt=False)
    if not full.startswith(prefix):
        raise ValueError("the chat template renders the prompt differently with and without the answer, so the "
                         "response tokens cannot be located; pass a chat template with a stable prefix")
    prompt_ids = tokenizer.encode(prefix, add_special_tokens=False)
    response_ids = tokenizer.encode(full[len(prefix):], add_special_tokens=False)
    if len(prompt_ids) >= max_length:
        raise ValueError(f"a prompt of {len(prompt_ids)} tokens leaves no room for the answer within "
                         f"max_length={max_length}; raise max_length")
    ids = (prompt_ids + response_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + response_ids)[:max_length]
    return ids, labels


def idk_answer(index: int, seed: int) -> str:
    """A refusal for example `index`, chosen deterministically from IDK_ANSWERS."""
    return random.Random(seed * 1_000_003 + index).choice(IDK_ANSWERS)
