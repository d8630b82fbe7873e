"""DeltaRows: rows that join late and leave early get the same delta logits as a feed of their own; the
transformers cache internals it relies on (DynamicCache layers' keys/values) are pinned here."""

from __future__ import annotations

import torch

from crossmodel.serve.rows import DeltaRows, cache_from, cache_tensors
from crossmodel.steer.sync import ReencodeFeed


def alone(delta, tokens: list[int], steps: list[list[int]]) -> list[torch.Tensor]:
    feed = ReencodeFeed(delta.model, delta.tokenizer)
    out = [feed.prefill([tokens])[0]]
    return out + [feed.advance([t])[0] for t in steps]


def test_cache_round_trip(same_delta):
    feed = ReencodeFeed(same_delta.model, same_delta.tokenizer)
    feed.prefill([[1, 5, 6, 7], [1, 8]])
    layers = cache_tensors(feed.cache)
    assert len(layers) == same_delta.model.config.num_hidden_layers
    assert layers[0][0].shape[:1] == (2,) and layers[0][0].shape[2] == 4  # (B, H, S, D)
    rebuilt = cache_from(same_delta.model.config, layers)
    assert rebuilt.get_seq_length() == 4
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(layers, cache_tensors(rebuilt)))


def test_join_and_leave_match_separate_feeds(same_delta):
    rows = DeltaRows(same_delta.model, same_delta.tokenizer)
    a, b, c = [1, 20, 21, 22, 23, 24, 25], [1, 30], [1, 40, 41, 42]
    rows.join(["a"], [a])
    first = rows.step([a + [50]])
    rows.join(["b", "c"], [b, c])  # narrower and wider newcomers
    second = rows.step([a + [50, 51], b + [60], c + [70]])
    rows.leave({"a"})
    third = rows.step([b + [60, 61], c[:-1] + [71]])  # c revises a token it already read (another vocabulary)
    assert rows.keys == ["b", "c"] and rows.feed.slots.shape[0] == 2
    assert not bool((rows.feed.slots.sum(0) == 0).any()), "columns no row uses were dropped"
    want_a = alone(same_delta, a, [a + [50], a + [50, 51]])
    want_b = alone(same_delta, b, [b + [60], b + [60, 61]])
    want_c = alone(same_delta, c, [c + [70], c[:-1] + [71]])
    for got, want in ((first[0], want_a[1]), (second[0], want_a[2]), (second[1], want_b[1]),
                      (second[2], want_c[1]), (third[0], want_b[2]), (third[1], want_c[2])):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-3)
