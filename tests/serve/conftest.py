"""Tiny tokenizers and random-weight models for the serve tests (the steer tests' factories), and sharpened deltas
so that steering visibly changes greedy tokens."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from crossmodel.steer import DeltaModel
from crossmodel.vocab import TokenMap
from ..steer.conftest import bpe_tok, char_tok, make_model  # noqa: F401  (the steer tests' tokenizer fixtures)


def sharp_delta(vocabulary_of, seed: int) -> DeltaModel:
    """A 1-layer delta whose logits are large enough to change a tiny model's greedy choice at alpha ~ 1."""
    delta = DeltaModel.create(vocabulary_of=vocabulary_of, layers=1, d_model=32, heads=2, seed=seed,
                              tie_embeddings=False)
    with torch.no_grad():
        delta.model.lm_head.weight.mul_(300.0)
    return delta


@pytest.fixture(scope="session")
def user(char_tok):
    return SimpleNamespace(model=make_model(char_tok, seed=1), tokenizer=char_tok, name="char-user")


@pytest.fixture(scope="session")
def same_delta(user):
    return sharp_delta(user, seed=3)


@pytest.fixture(scope="session")
def cross_delta(bpe_tok):
    return sharp_delta(bpe_tok, seed=4)


@pytest.fixture(scope="session")
def cross_map(char_tok, bpe_tok):
    return TokenMap.build(char_tok, bpe_tok)
