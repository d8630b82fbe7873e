"""Keeping a delta model in step with the user model's text (docs/STEERING.md).

A *feed* owns one delta model's view of a batch: `start(...)` runs the prompt and returns the delta's last
logits, `step(...)` takes what the user model just emitted and returns the next last logits. Three feeds:

- `TokenFeed`: same vocabulary; the delta reads the user's own tokens with its own KV cache.
- `ReencodeFeed`: another vocabulary; after each user token the text so far is re-encoded with the delta
  tokenizer, the longest common prefix (LCP) with what the delta already consumed is kept, the delta KV cache
  is cropped to it and only the new suffix is fed. The prompt is never re-run.
- `FullReencodeFeed`: the reference's way: re-run the delta on the whole re-encoded text without a cache.

Batch layout of the incremental feed: every row owns the same number of cache *slots*; a slot mask marks which
hold real tokens. New tokens are written right-aligned (rows feeding fewer tokens get masked pad slots in front),
so every row's last logits sit in the last column and padding may sit in the middle of a row, which explicit
position ids and the 2-D attention mask handle.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch

from crossmodel.models.batch import pad_id, pad_rows

REPLACEMENT = "\ufffd"  # what decode() shows for an incomplete UTF-8 sequence


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Position of each slot among its row's real tokens, as HF's generate computes it; pads get 1."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def complete_text(text: str) -> str:
    """Drop a trailing incomplete character: its bytes are not all generated yet, so don't show it to the delta."""
    return text.rstrip(REPLACEMENT)


@functools.cache
def _cache_kwarg(model_class: type) -> str:
    """transformers 5.24 renamed `past_key_values` to `cache` (the old name warns, and goes in 5.40)."""
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


@torch.no_grad()
def forward_step(model: Any, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any = None,
                 last_only: bool = True):
    """One forward of `ids` after what `cache` holds (no cache: the whole sequence), as `generate` calls it."""
    # last_only: the lm head runs on the last position only (with Gemma's 262k rows that is most of a prefill)
    return model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=cache is not None,
                 logits_to_keep=1 if last_only else 0, **{_cache_kwarg(type(model)): cache})


class TokenFeed:
    """Same vocabulary: the delta consumes exactly the user's tokens, with its own KV cache."""

    def __init__(self, model: Any):
        self.model = model
        self.cache = None
        self.mask = None

    def start(self, user_ids: torch.Tensor, user_mask: torch.Tensor, prompt_texts: list[str]) -> torch.Tensor:
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.model.config)
        self.mask = user_mask.to(self.model.device)
        out = forward_step(self.model, user_ids.to(self.model.device), self.mask, position_ids(self.mask), self.cache)
        return out.logits[:, -1].float()  # (B, V_delta)

    def step(self, new_tokens: torch.Tensor, texts: list[str]) -> torch.Tensor:
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], dim=-1)
        positions = self.mask.sum(-1, keepdim=True) - 1  # (B, 1)
        out = forward_step(self.model, new_tokens.to(self.model.device)[:, None], self.mask, positions, self.cache)
        return out.logits[:, -1].float()


class _TextFeed:
    """Shared by the re-encoding feeds: turns prompt text + generated text into delta token lists."""

    def __init__(self, model: Any, tokenizer: Any, add_special_tokens: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.add_special_tokens = add_special_tokens
        self.pad_id = pad_id(tokenizer)
        self.prompts: list[str] = []

    def encode(self, generated: list[str]) -> list[list[int]]:
        texts = [p + complete_text(g) for p, g in zip(self.prompts, generated)]
        return self.tokenizer(texts, add_special_tokens=self.add_special_tokens).input_ids


class FullReencodeFeed(_TextFeed):
    """The reference's sync: re-encode the whole text and re-run the delta on it at every step, no cache."""

    def _run(self, generated: list[str]) -> torch.Tensor:
        ids, mask = pad_rows(self.encode(generated), self.pad_id, side="left", device=self.model.device)
        # as the reference does: the whole text through the model, logits at every position, keep the last
        return forward_step(self.model, ids, mask, position_ids(mask), last_only=False).logits[:, -1].float()

    def start(self, user_ids: torch.Tensor, user_mask: torch.Tensor, prompt_texts: list[str]) -> torch.Tensor:
        self.prompts = list(prompt_texts)
        return self._run([""] * len(self.prompts))

    def step(self, new_tokens: torch.Tensor, texts: list[str]) -> torch.Tensor:
        return self._run(texts)


class ReencodeFeed(_TextFeed):
    """Incremental cross-vocabulary sync: re-encode, keep the LCP, crop the delta cache, feed the suffix."""

    def start(self, user_ids: torch.Tensor, user_mask: torch.Tensor, prompt_texts: list[str]) -> torch.Tensor:
        self.prompts = list(prompt_texts)
        return self.prefill(self.encode([""] * len(self.prompts)))

    def prefill(self, targets: list[list[int]]) -> torch.Tensor:
        """Run the delta on delta token rows (left-padded, a fresh cache); their last logits (B, V_delta)."""
        from transformers import DynamicCache

        self.consumed = [list(t) for t in targets]  # delta tokens each row has seen
        ids, self.slots = pad_rows(self.consumed, self.pad_id, side="left", device=self.model.device)  # (B, S)
        self.cache = DynamicCache(config=self.model.config)
        out = forward_step(self.model, ids, self.slots, position_ids(self.slots), self.cache)
        self.last = out.logits[:, -1].float()
        return self.last

    def _keep_slots(self, row: int, tokens: int) -> int:
        """How many slots to keep so that row `row` keeps exactly its first `tokens` real tokens."""
        if tokens == 0:
            return 0
        real = self.slots[row].nonzero().flatten()  # slot index of each real token
        return int(real[tokens - 1]) + 1

    def step(self, new_tokens: torch.Tensor, texts: list[str]) -> torch.Tensor:
        return self.advance(self.encode(texts))

    def advance(self, targets: list[list[int]]) -> torch.Tensor:
        """Bring every row to its target delta tokens (LCP kept, cache cropped, suffix fed); last logits (B, V)."""
        changed = [t != c for t, c in zip(targets, self.consumed)]
        if not any(changed):
            return self.last
        # keep each changed row's LCP, but re-feed at least its last token: we need logits at the end
        if not all(targets):
            raise ValueError("a prompt encodes to no delta tokens; give a non-empty prompt")
        keep = [self._keep_slots(b, min(common_prefix(t, c), len(t) - 1)) if ch else self.slots.shape[1]
                for b, (t, c, ch) in enumerate(zip(targets, self.consumed, changed))]
        width = min(keep)
        self.cache.crop(width - self.cache.get_seq_length())  # negative: number of slots to drop
        self.slots = self.slots[:, :width]
        kept = self.slots.sum(-1).tolist()  # real tokens still cached per row
        feeds = [t[k:] for t, k in zip(targets, kept)]  # unchanged rows feed only what the crop took
        ids, new_mask = pad_rows(feeds, self.pad_id, side="left", device=self.model.device)  # (B, L)
        positions = (torch.tensor(kept, device=ids.device)[:, None] + new_mask.cumsum(-1) - 1).clamp_min(0)
        mask = torch.cat([self.slots, new_mask], dim=-1)  # (B, width + L)
        logits = forward_step(self.model, ids, mask, positions, self.cache).logits[:, -1].float()  # (B, V_delta)
        idle = torch.tensor([not f for f in feeds], device=logits.device)  # rows that fed only padding
        self.last = torch.where(idle[:, None], self.last, logits)
        self.slots, self.consumed = mask, targets
        return self.last
