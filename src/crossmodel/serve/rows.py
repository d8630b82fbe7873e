"""One delta's running requests as one batch that requests join and leave (continuous batching).

The batch is steer's incremental re-encode feed (`steer/sync.py: ReencodeFeed`): every row owns the same number
of KV-cache slots, a slot mask marks the real ones, new tokens are written right-aligned, and each step brings
every row to its *target* delta tokens (longest common prefix kept, cache cropped, suffix fed) in one batched
forward. A same-vocabulary delta's target is the user's own token ids, so it only ever appends. What vLLM adds
is that rows come and go: `join` prefills the newcomers together and appends them (left-padding the narrower
cache), `leave` keeps the other rows and drops slot columns no row uses any more.
"""

from __future__ import annotations

from typing import Any, Hashable, Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from crossmodel.steer.sync import ReencodeFeed

KV = tuple[torch.Tensor, torch.Tensor]  # one layer's (keys, values), each (B, kv_heads, S, head_dim)


def cache_tensors(cache: DynamicCache) -> list[KV]:
    """Every layer's (keys, values) of a full-attention DynamicCache (pinned by tests/serve/test_rows.py)."""
    layers = [(layer.keys, layer.values) for layer in cache.layers]
    if any(k is None or k.dim() != 4 for k, _ in layers):
        raise ValueError("a delta served by crossmodel must use plain full-attention KV caches (Llama-style, as "
                         "DeltaModel.create builds); this delta's cache has another layout")
    return layers


def cache_from(config: Any, layers: Sequence[KV]) -> DynamicCache:
    """A DynamicCache holding exactly these (keys, values) per layer."""
    cache = DynamicCache(config=config)
    for i, (keys, values) in enumerate(layers):
        cache.update(keys, values, i)
    return cache


def _left_pad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """`t` padded with zeros in front along `dim` to `width` (masked slots: their values are never read)."""
    missing = width - t.shape[dim]
    if missing == 0:
        return t
    pad = [0, 0] * (t.dim() - 1 - dim % t.dim()) + [missing, 0]
    return F.pad(t, pad)


class DeltaRows:
    """The requests one delta steers, as one batched feed; rows are addressed by request keys."""

    def __init__(self, model: Any, tokenizer: Any):
        self.model, self.tokenizer = model, tokenizer
        self.keys: list[Hashable] = []  # the request in each row, in row order
        self.feed: ReencodeFeed | None = None

    def __len__(self) -> int:
        return len(self.keys)

    def _new_feed(self, targets: list[list[int]]) -> ReencodeFeed:
        feed = ReencodeFeed(self.model, self.tokenizer)
        feed.prefill(targets)
        return feed

    def join(self, keys: Sequence[Hashable], targets: list[list[int]]) -> None:
        """Prefill new rows (their delta token ids) in one forward and append them to the batch."""
        if any(not t for t in targets):
            raise ValueError("a prompt encodes to no delta tokens; give a non-empty prompt")
        new = self._new_feed(targets)
        self.keys = [*self.keys, *keys]
        if self.feed is None:
            self.feed = new
            return
        old = self.feed
        width = max(old.slots.shape[1], new.slots.shape[1])
        layers = [(torch.cat([_left_pad(ko, width, 2), _left_pad(kn, width, 2)]),  # (B_old + B_new, H, W, D)
                   torch.cat([_left_pad(vo, width, 2), _left_pad(vn, width, 2)]))
                  for (ko, vo), (kn, vn) in zip(cache_tensors(old.cache), cache_tensors(new.cache))]
        old.cache = cache_from(self.model.config, layers)
        old.slots = torch.cat([_left_pad(old.slots, width, 1), _left_pad(new.slots, width, 1)])  # (B, W)
        old.consumed = [*old.consumed, *new.consumed]
        old.last = torch.cat([old.last, new.last])  # (B, V_delta)

    def leave(self, keys: set[Hashable]) -> None:
        """Drop the rows of `keys` (requests that finished or left the batch); unknown keys are ignored."""
        stay = [i for i, k in enumerate(self.keys) if k not in keys]
        if len(stay) == len(self.keys):
            return
        self.keys = [self.keys[i] for i in stay]
        if not stay:
            self.feed = None
            return
        feed = self.feed
        index = torch.tensor(stay, device=feed.slots.device)
        slots = feed.slots[index]  # (B', S)
        first = int(slots.any(0).nonzero()[0])  # leading columns no remaining row uses
        feed.slots = slots[:, first:]
        feed.cache = cache_from(self.model.config, [(k[index, :, first:], v[index, :, first:])
                                                    for k, v in cache_tensors(feed.cache)])
        feed.consumed = [feed.consumed[i] for i in stay]
        feed.last = feed.last[index]

    def step(self, targets: list[list[int]]) -> torch.Tensor:
        """Bring every row (in `keys` order) to its target delta tokens; the delta's last logits (B, V_delta)."""
        if self.feed is None:
            raise ValueError("no request joined this delta's rows")
        return self.feed.advance(targets)
