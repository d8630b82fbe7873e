"""Tiny synthetic vocabularies and tokenizer files for the vocab tests (built in seconds, no downloads)."""

import json

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from crossmodel.vocab import Family, Vocabulary
from crossmodel.vocab.surface import byte_level_alphabet

SP_BYTES = [f"<0x{b:02X}>" for b in range(256)]


def sentencepiece_vocab(extra=("▁", "▁the", "▁a", "a", "b", "c", "the", "ab", "▁▁")) -> Vocabulary:
    """Llama-style: <unk> <s> </s>, 256 byte pieces, then text pieces."""
    tokens = ["<unk>", "<s>", "</s>", *SP_BYTES, *extra]
    return Vocabulary.from_tokens(tokens, Family.SENTENCEPIECE, special={"unk": 0, "bos": 1, "eos": 2},
                                  special_ids={0, 1, 2}, source="synthetic-sp")


def byte_level_vocab(extra=("Ġthe", "Ġa", "ĠĠ", "ĊĊ", "the", "ab")) -> Vocabulary:
    """GPT-2-style: the 256 byte characters, text pieces, then <|endoftext|> (bos = eos)."""
    tokens = [*byte_level_alphabet(), *extra, "<|endoftext|>"]
    eot = len(tokens) - 1
    return Vocabulary.from_tokens(tokens, Family.BYTE_LEVEL, special={"bos": eot, "eos": eot}, special_ids={eot},
                                  added={eot: "<|endoftext|>"}, source="synthetic-bl")


def write_byte_level_tokenizer_json(folder, with_config=True):
    """A real tokenizer.json (BPE, byte-level pre-tokenizer and decoder) plus tokenizer_config.json."""
    vocab = {t: i for i, t in enumerate([*byte_level_alphabet(), "Ġthe", "ab"])}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[("a", "b"), ("Ġ", "t")][:1]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(["<|endoftext|>"])
    tk.add_tokens(["<extra>"])
    folder.mkdir(parents=True, exist_ok=True)
    tk.save(str(folder / "tokenizer.json"))
    if with_config:
        (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|endoftext|>",
                                                                 "eos_token": {"content": "<|endoftext|>"}}))
    return folder / "tokenizer.json"


def write_sentencepiece_tokenizer_json(folder):
    """A Llama-style tokenizer.json: byte_fallback BPE, Replace(' ', '▁') normalizer, no pre-tokenizer."""
    tokens = ["<unk>", "<s>", "</s>", *SP_BYTES, "▁", "▁the", "a", "b"]
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=[], unk_token="<unk>",
                              byte_fallback=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tk.add_special_tokens(["<unk>", "<s>", "</s>"])
    folder.mkdir(parents=True, exist_ok=True)
    tk.save(str(folder / "tokenizer.json"))
    return folder / "tokenizer.json"
