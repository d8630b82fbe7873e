"""Tiny tokenizer and random-weight models for the eval tests, plus a scripted `Evaluable` whose log-probs are
chosen by the test, so suite-level numbers can be worked out by hand."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
from ..tiny import tiny_llama

CORPUS = ["What is the full name of the author born in Kuwait City? The author is Basil Mahfouz Al-Kuwaiti.",
          "Question: Who wrote the play Romeo and Juliet? Answer: William Shakespeare wrote it.",
          "The capital of France is Paris, and the capital of Italy is Rome."] * 10


def make_tokenizer(vocab_size: int = 300) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def make_model(tokenizer, seed: int = 0, context: int = 256) -> LlamaForCausalLM:
    return tiny_llama(len(tokenizer), context=context, seed=seed, tokenizer=tokenizer, sharpen=20.0)


class Scripted:
    """An `Evaluable` that answers `generations[prompt]` and scores continuation c with `logprobs[c]`;
    counts calls so resume tests can see what was recomputed."""

    def __init__(self, generations: dict[str, str], logprobs: dict[str, list[float]], fail_after: int | None = None):
        self.generations, self.logprobs, self.fail_after = generations, logprobs, fail_after
        self.generate_calls = self.score_calls = 0
        self.generated_prompts: list[str] = []

    def generate(self, prompts, max_new_tokens=128, do_sample=False, chat=True):
        if self.fail_after is not None and self.generate_calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.generate_calls += 1
        self.generated_prompts += prompts
        return [self.generations.get(p, "") for p in prompts]

    def score(self, prompts, continuations, chat=True):
        self.score_calls += 1
        return [torch.tensor(self.logprobs[c]) for c in continuations]


@pytest.fixture(scope="session")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny(tok):
    return make_model(tok)


@pytest.fixture(scope="session")
def model_factory():
    """`make_model` itself, for tests that need a model with a particular context or seed."""
    return make_model


@pytest.fixture
def scripted():
    """The `Scripted` class (tests build it with their own answers and log-probs)."""
    return Scripted


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tok):
    """The tiny model saved as an HF directory (what `crossmodel eval --model DIR` reads)."""
    path = tmp_path_factory.mktemp("eval-model") / "model"
    make_model(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path
