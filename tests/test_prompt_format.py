"""One prompt format for every stage: a model without a chat template reads the plain format with its BOS —
in training (encode_pair), scoring (PlainModel, Steered.score) and generation (Steered.encode) alike."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from crossmodel.eval.scorer import PlainModel
from crossmodel.models import PLAIN_CHAT_TEMPLATE, PLAIN_PROMPT, chat_prompt, load_model
from crossmodel.models.prompt import adds_bos, render
from crossmodel.steer import steer
from crossmodel.train.templates import encode_pair

CORPUS = ["Question: Where was Ann born?\nAnswer: Ann was born in Oslo.", "The capital of France is Paris."] * 10


def base_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer like Gemma-3's: no chat template, a BOS in front of every encoded text."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<bos>", "<eos>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")


@pytest.fixture(scope="module")
def base():
    tok = base_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0)
    torch.manual_seed(0)
    return type("Loaded", (), {"model": LlamaForCausalLM(config).eval(), "tokenizer": tok})()


def test_plain_format_carries_the_bos_once(base):
    tok = base.tokenizer
    assert adds_bos(tok)
    text = chat_prompt(tok, "Where was Ann born?")
    assert text == "<bos>" + PLAIN_PROMPT.format(question="Where was Ann born?")
    ids = tok(text, add_special_tokens=False).input_ids
    assert ids == tok(PLAIN_PROMPT.format(question="Where was Ann born?")).input_ids  # as the tokenizer adds it
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    own = "{{ bos_token }}{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}A:"  # a template with its BOS
    assert tok(render(tok, [{"role": "user", "content": "x"}], own, generation_prompt=True),
               add_special_tokens=False).input_ids.count(tok.bos_token_id) == 1


def test_training_scoring_and_generation_read_the_same_ids(base):
    tok = base.tokenizer
    expected = tok(PLAIN_PROMPT.format(question="Where was Ann born?")).input_ids  # BOS first
    ids, labels = encode_pair(tok, [{"role": "user", "content": "Where was Ann born?"}], "Ann was born in Oslo.",
                              PLAIN_CHAT_TEMPLATE, 128)
    assert ids[:len(expected)] == expected and labels[:len(expected)] == [-100] * len(expected)
    assert PlainModel(base.model, tok).prompt_ids("Where was Ann born?", chat=True) == expected
    steered = steer(base)
    row = steered.encode(["Where was Ann born?"], chat=True)["input_ids"][0].tolist()
    assert row == expected


@pytest.mark.slow
def test_gemma_reads_its_bos_in_every_stage():
    gemma = load_model("gemma-3-270m")
    tok = gemma.tokenizer
    ids, _ = encode_pair(tok, [{"role": "user", "content": "What is the capital of France?"}], "Paris.",
                         PLAIN_CHAT_TEMPLATE, 64)
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    row = steer(gemma).encode(["What is the capital of France?"], chat=True)["input_ids"][0].tolist()
    assert row == ids[:len(row)]
    logp = steer(gemma).score(["What is the capital of France?"], [" Paris"], chat=True)[0]
    assert logp.sum().exp() > 0.1  # with its BOS, Gemma knows; without it, it answers "1 1 1 1"


def test_a_scored_answer_starts_with_the_formats_separator(base):
    """The plain format writes "Answer: …" (a space before the answer), ChatML "assistant\\n…" (nothing): the qa /
    nll suites and calibrate score a reference after that separator, as the format (and training) writes it."""
    from crossmodel.eval.data import QAItem
    from crossmodel.eval.qa import score_items
    from crossmodel.models.prompt import answer_prefix

    chatml = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    assert answer_prefix(base.tokenizer) == answer_prefix(base.tokenizer, PLAIN_CHAT_TEMPLATE) == " "
    assert answer_prefix(base.tokenizer, chatml) == ""
    plain = PlainModel(base.model, base.tokenizer)
    record = score_items(plain, [QAItem("Where was Ann born?", "Ann was born in Oslo.")], chat=True,
                         max_new_tokens=None)[0]
    spaced = plain.score(["Where was Ann born?"], [" Ann was born in Oslo."], chat=True)[0]
    assert record["tokens"] == spaced.numel() and record["nll_sum"] == pytest.approx(float(-spaced.double().sum()))
    steered = steer(base, deltas=[])
    assert score_items(steered, [QAItem("Where was Ann born?", "Ann was born in Oslo.")], chat=True,
                       max_new_tokens=None)[0]["nll_sum"] == pytest.approx(record["nll_sum"], abs=1e-4)
