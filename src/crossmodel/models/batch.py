"""Token rows into model batches: the one rule for a tokenizer's pad id, and left or right padding."""

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
