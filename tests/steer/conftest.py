"""Tiny real tokenizers and random-weight Llama models for fast steering tests.

`char_tokenizer`: one token per printable ASCII character, so decode/re-encode is lossless (the identity-map test
needs that: a random model happily emits non-canonical BPE sequences). `bpe_tokenizer`: a byte-level BPE trained
on a fixed text with merges, so it splits text very differently from the char tokenizer (cross-vocab sync).
"""

from __future__ import annotations

import string
from types import SimpleNamespace

import pytest
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from crossmodel.steer import DeltaModel
from ..tiny import tiny_llama

SPECIALS = ["<pad>", "<s>", "</s>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog. A delta model steers a large language model.",
    "Cross-model control trains one tiny model and applies its logit shift to many others.",
    "Once upon a time there was a small model that wanted to help a big one answer questions.",
    "Tokenizers split text into pieces; different tokenizers split the same text differently.",
] * 20


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   padding_side="left")


def make_char_tokenizer() -> PreTrainedTokenizerFast:
    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
    vocab = {t: i for i, t in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return _wrap(tok)


def make_bpe_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return _wrap(tok)


def make_model(tokenizer, layers: int = 2, d_model: int = 32, seed: int = 0, rows: int | None = None):
    return tiny_llama(rows or len(tokenizer), hidden=d_model, layers=layers, seed=seed, tokenizer=tokenizer,
                      sharpen=20.0)


@pytest.fixture(scope="session")
def char_tok():
    return make_char_tokenizer()


@pytest.fixture(scope="session")
def bpe_tok():
    return make_bpe_tokenizer()


@pytest.fixture(scope="session")
def char_user(char_tok):
    return SimpleNamespace(model=make_model(char_tok, seed=1), tokenizer=char_tok, name="char-user")


@pytest.fixture(scope="session")
def bpe_user(bpe_tok):
    return SimpleNamespace(model=make_model(bpe_tok, seed=2), tokenizer=bpe_tok, name="bpe-user")


@pytest.fixture(scope="module")
def char_delta(char_user):
    return DeltaModel.create(vocabulary_of=char_user, layers=1, d_model=32, heads=2, seed=3)


@pytest.fixture(scope="module")
def bpe_delta(bpe_tok):
    return SimpleNamespace(model=make_model(bpe_tok, seed=4), tokenizer=bpe_tok, name="bpe-delta")
