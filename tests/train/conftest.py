"""Tiny fixtures for the train stage: a byte-level BPE tokenizer trained on generated facts, and random-weight
Llama models built with `from_config` (template and delta share the tokenizer's vocabulary)."""

import string

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from crossmodel.steer import DeltaModel
from crossmodel.steer.transplant import transplant
from crossmodel.train.facts import generate_facts
from ..tiny import tiny_llama

SPECIALS = ["<pad>", "<eos>"]


def make_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    text = [r["question"] + " " + r["answer"] for r in generate_facts(20, seed=123)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def make_llama(vocab_size: int, hidden: int = 32, layers: int = 2, seed: int = 0) -> LlamaForCausalLM:
    return tiny_llama(vocab_size, hidden=hidden, layers=layers, seed=seed, pad_token_id=0, eos_token_id=1,
                      bos_token_id=1)


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture
def template(tokenizer):
    model = make_llama(len(tokenizer), hidden=48, layers=2, seed=1)
    model.requires_grad_(False)
    return model


@pytest.fixture
def template_dir(tmp_path, tokenizer, template):
    """The tiny template saved as an HF dir, as `crossmodel train --template DIR` reads it."""
    path = tmp_path / "template"
    template.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def delta(tokenizer):
    return make_llama(len(tokenizer), hidden=32, layers=2, seed=2).train()


def _naive_stats(template, delta, batch, rule="basenormalize", alpha=1.0):
    """Reference: full [B, T, V] logits of both models from their own forward, combined with `combine`, then
    (target log-prob, KL(template || combined), template target log-prob, sequence id) at the loss positions."""
    from crossmodel.steer.combine import combine
    from crossmodel.train.templates import IGNORE_INDEX

    zt = template(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    zd = delta(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    logp = torch.log_softmax(combine(zt, zd, rule, alpha), -1)[:, :-1]  # (B, T-1, V)
    lt = torch.log_softmax(zt.float(), -1)[:, :-1]
    mask = batch.labels[:, 1:] != IGNORE_INDEX
    y = batch.labels[:, 1:][mask][:, None]
    seq = mask.nonzero(as_tuple=True)[0]
    return (logp[mask].gather(-1, y)[:, 0], (lt[mask].exp() * (lt[mask] - logp[mask])).sum(-1),
            lt[mask].gather(-1, y)[:, 0], seq)


@pytest.fixture
def naive_stats():
    return _naive_stats


def _char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per printable character (a vocabulary very unlike the BPE one above)."""
    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(["<pad>", "<eos>", *chars])}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


@pytest.fixture(scope="module")
def char_tok():
    return _char_tokenizer()


def pair(tokenizer, char_tok, seed=0, layout="factored"):
    """(original delta in the BPE vocabulary, its transplant into the char vocabulary, the map)."""
    source = DeltaModel.create(vocabulary_of=tokenizer, layers=1, d_model=32, heads=4, seed=seed)
    with torch.no_grad():
        source.model.get_output_embeddings().weight.mul_(30.0)
    moved, token_map = transplant(source, char_tok, mode="one-to-many", layout=layout)
    return source, moved, token_map
