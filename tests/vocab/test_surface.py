"""Surface forms: the bytes each token stands for, per family."""

import pytest
from .vocab_fixtures import byte_level_vocab, sentencepiece_vocab

from crossmodel.vocab import Family, token_bytes
from crossmodel.vocab.surface import byte_level_alphabet, latin1_form


def test_byte_level_alphabet_is_a_bijection_onto_all_bytes():
    table = byte_level_alphabet()
    assert sorted(table.values()) == list(range(256))
    assert table["Ġ"] == 0x20 and table["Ċ"] == 0x0A and table["a"] == 0x61


@pytest.mark.parametrize("token,family,expected", [
    ("▁the", Family.SENTENCEPIECE, b" the"), ("<0x0A>", Family.SENTENCEPIECE, b"\n"),
    ("<0x0a>", Family.SENTENCEPIECE, b"\n"), ("▁é", Family.SENTENCEPIECE, " é".encode()),
    ("<0xZZ>", Family.SENTENCEPIECE, b"<0xZZ>"), ("Ġthe", Family.BYTE_LEVEL, b" the"),
    ("Ã©", Family.BYTE_LEVEL, "é".encode()), ("Ã", Family.BYTE_LEVEL, b"\xc3"),
    ("<|im_start|>", Family.BYTE_LEVEL, b"<|im_start|>"), ("Ġ\n", Family.BYTE_LEVEL, "Ġ\n".encode()),
    ("a▁b", Family.OTHER, "a▁b".encode()),
])
def test_token_bytes_and_fast_latin1_form_agree(token, family, expected):
    assert token_bytes(token, family) == expected
    assert latin1_form(token, family) == expected.decode("latin-1")


def test_fast_form_matches_on_whole_vocabularies():
    for vocab in (sentencepiece_vocab(), byte_level_vocab()):
        for tok in vocab.tokens:
            assert latin1_form(tok, vocab.family) == token_bytes(tok, vocab.family).decode("latin-1")
