"""Token rows into model batches: the one rule for a tokenizer's pad id, left or right padding, and how many
positions a model reads (its context length)."""

from __future__ import annotations

from typing import Any

import torch


def pad_id(tokenizer: Any) -> int:
    """The id that pads a batch: the tokenizer's pad token, else its EOS, else 0 (id 0 is a valid pad id)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def pad_rows(rows: list[list[int]], pad: int, *, side: str = "right", device: Any = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), both (B, T) int64, from token rows of different lengths.

    side="left" puts the padding first, so every row ends where generation continues; "right" keeps each row's
    positions those of its unpadded sequence (training, teacher-forced scoring).
    """
    if side not in ("left", "right"):
        raise ValueError(f"side={side!r}; choose 'left' or 'right'")
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        if row:
            span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            ids[b, span], mask[b, span] = torch.tensor(row, dtype=torch.long), 1
    return (ids, mask) if device is None else (ids.to(device), mask.to(device))


def context_length(model: Any) -> int | None:
    """How many positions `model` reads (its config's max_position_embeddings, n_positions or max_sequence_length,
    on the text config of a multimodal model), or None when its config does not say."""
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(text_config, name, None) or getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class ContextTooLong(ValueError):
    """A prompt plus max_new_tokens does not fit a model's context (`crossmodel chat` drops old turns on it)."""


def check_context(model: Any, lengths: list[int], max_new_tokens: int, who: str) -> None:
    """ContextTooLong naming the prompt, `who` and the limit when the longest of `lengths` plus `max_new_tokens`
    exceeds the model's context length."""
    limit = context_length(model)
    worst = max(lengths)
    if limit is not None and worst + max_new_tokens > limit:
        i = lengths.index(worst)
        raise ContextTooLong(f"prompt {i} is {worst} tokens for the {who}, plus max_new_tokens={max_new_tokens} "
                             f"exceeds its context of {limit} tokens; shorten the prompt or lower max_new_tokens")
