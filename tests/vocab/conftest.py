"""Fixtures for the vocab tests: synthetic SentencePiece-style and byte-level vocabularies."""

import pytest
from .vocab_fixtures import byte_level_vocab, sentencepiece_vocab

from crossmodel.vocab import Vocabulary


@pytest.fixture
def sp_vocab() -> Vocabulary:
    return sentencepiece_vocab()


@pytest.fixture
def bl_vocab() -> Vocabulary:
    return byte_level_vocab()
