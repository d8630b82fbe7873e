"""Reading vocabularies from every supported source, the family from the tokenizer's own config, and errors."""

import io

import gguf
import pytest
import sentencepiece as spm
from transformers import AutoTokenizer, PreTrainedTokenizerFast
from .vocab_fixtures import write_byte_level_tokenizer_json, write_sentencepiece_tokenizer_json

from crossmodel.vocab import Family, load_vocabulary


def test_byte_level_tokenizer_json_with_config(tmp_path):
    path = write_byte_level_tokenizer_json(tmp_path / "bl")
    vocab = load_vocabulary(path)
    assert vocab.family is Family.BYTE_LEVEL
    assert vocab.base_size == 258 and len(vocab) == 260
    eot = vocab.tokens.index("<|endoftext|>")
    assert vocab.special == {"bos": eot, "eos": eot}
    assert vocab.special_ids == {eot}
    assert vocab.added == {eot: "<|endoftext|>", eot + 1: "<extra>"}


def test_sentencepiece_style_tokenizer_json_is_read_from_its_config(tmp_path):
    vocab = load_vocabulary(write_sentencepiece_tokenizer_json(tmp_path / "sp"))
    assert vocab.family is Family.SENTENCEPIECE
    assert vocab.tokens[:4] == ("<unk>", "<s>", "</s>", "<0x00>")
    assert vocab.special["unk"] == 0 and vocab.special_ids == {0, 1, 2}


def test_hf_object_and_hf_directory_agree_with_the_file(tmp_path):
    path = write_byte_level_tokenizer_json(tmp_path / "bl")
    hf = PreTrainedTokenizerFast(tokenizer_file=str(path), bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    hf.save_pretrained(tmp_path / "hf")
    from_file, from_object = load_vocabulary(path), load_vocabulary(hf)
    from_dir, from_auto = load_vocabulary(tmp_path / "hf"), load_vocabulary(AutoTokenizer.from_pretrained(tmp_path / "hf"))
    assert from_object.tokens == from_file.tokens and from_object.family is Family.BYTE_LEVEL
    assert from_object.fingerprint == from_file.fingerprint == from_dir.fingerprint == from_auto.fingerprint


def test_sentencepiece_model(tmp_path):
    model = io.BytesIO()
    lines = ["the cat sat on the mat", "a dog ate the hat", "cats and dogs"] * 20
    spm.SentencePieceTrainer.train(sentence_iterator=iter(lines), model_writer=model, vocab_size=30,
                                   model_type="bpe", bos_id=1, eos_id=2, unk_id=0, minloglevel=2)
    (tmp_path / "tokenizer.model").write_bytes(model.getvalue())
    vocab = load_vocabulary(tmp_path / "tokenizer.model")
    assert vocab.family is Family.SENTENCEPIECE and len(vocab) == 30
    assert vocab.special == {"unk": 0, "bos": 1, "eos": 2}
    assert any(t.startswith("▁") for t in vocab.tokens)
    assert load_vocabulary(tmp_path).fingerprint == vocab.fingerprint  # a folder holding tokenizer.model


def write_gguf(path, model="gpt2"):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model(model)
    writer.add_token_list(["<|endoftext|>", "Ġthe", "a", "<user>"])
    writer.add_token_types([3, 1, 1, 4])
    writer.add_eos_token_id(0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_vocab_only_gguf(tmp_path):
    write_gguf(tmp_path / "v.gguf")
    vocab = load_vocabulary(tmp_path / "v.gguf")
    assert vocab.tokens == ("<|endoftext|>", "Ġthe", "a", "<user>")
    assert vocab.family is Family.BYTE_LEVEL
    assert vocab.special == {"eos": 0} and vocab.special_ids == {0} and vocab.added == {3: "<user>"}


def test_fingerprint_changes_with_tokens_and_roles(sp_vocab):
    from crossmodel.vocab import Vocabulary

    same = Vocabulary.from_tokens(sp_vocab.tokens, sp_vocab.family, special=sp_vocab.special,
                                  special_ids=sp_vocab.special_ids)
    other_role = Vocabulary.from_tokens(sp_vocab.tokens, sp_vocab.family, special={"eos": 1})
    other_token = Vocabulary.from_tokens([*sp_vocab.tokens[:-1], "zz"], sp_vocab.family, special=sp_vocab.special)
    assert same.fingerprint == sp_vocab.fingerprint
    assert len({sp_vocab.fingerprint, other_role.fingerprint, other_token.fingerprint}) == 3


def test_missing_file_unknown_format_and_broken_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer not found"):
        load_vocabulary(tmp_path / "nope.json")
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01garbage")
    with pytest.raises(ValueError, match="unknown tokenizer format"):
        load_vocabulary(tmp_path / "weights.bin")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json is not valid JSON"):
        load_vocabulary(tmp_path / "tokenizer.json")
    (tmp_path / "bad.model").write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match="SentencePiece"):
        load_vocabulary(tmp_path / "bad.model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no tokenizer"):
        load_vocabulary(tmp_path / "empty")
    with pytest.raises(TypeError):
        load_vocabulary(42)


def test_truncated_gguf_and_gguf_without_tokenizer(tmp_path):
    write_gguf(tmp_path / "v.gguf")
    data = (tmp_path / "v.gguf").read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[:60])
    with pytest.raises(ValueError, match="not a readable GGUF"):
        load_vocabulary(tmp_path / "cut.gguf")
    writer = gguf.GGUFWriter(str(tmp_path / "none.gguf"), "llama")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="holds no tokenizer"):
        load_vocabulary(tmp_path / "none.gguf")
