"""Data loading: the three record formats, response-only labels under the chat template, errors with file:line."""

import json

import pytest

from crossmodel.train.data import collate, encode_examples, load_examples, with_idk_answers
from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE, chat_template_of
from crossmodel.train.templates import IDK_ANSWERS, IGNORE_INDEX


def write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_tofu_jsonl_and_json_array_give_the_same_examples(tmp_path):
    recs = [{"question": "Who?", "answer": "Ann.", "paraphrased_answer": "It is Ann."},
            {"question": "Where?", "answer": "Oslo."}]
    a = load_examples(write_lines(tmp_path / "a.jsonl", recs), "tofu")
    (tmp_path / "b.json").write_text(json.dumps(recs, indent=2))
    b = load_examples(tmp_path / "b.json", "tofu")
    assert [(e.prompt, e.response) for e in a] == [(e.prompt, e.response) for e in b]
    assert a[0].prompt == [{"role": "user", "content": "Who?"}] and a[0].extras["paraphrased_answer"] == "It is Ann."


def test_alpaca_input_is_appended_and_chat_keeps_history(tmp_path):
    alp = load_examples(write_lines(tmp_path / "a.jsonl", [
        {"instruction": "Translate.", "input": "Hallo", "output": "Hello"},
        {"instruction": "Say hi.", "input": "", "output": "Hi"}]), "alpaca")
    assert alp[0].prompt[0]["content"] == "Translate.\n\nHallo" and alp[1].prompt[0]["content"] == "Say hi."
    chat = load_examples(write_lines(tmp_path / "c.jsonl", [{"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}]}]), "chat")
    assert [m["role"] for m in chat[0].prompt] == ["system", "user"] and chat[0].response == "Hello"


@pytest.mark.parametrize("fmt,record,match", [
    ("tofu", {"question": "Q?"}, "'answer'"),
    ("tofu", {"instruction": "x", "output": "y"}, "'question'"),
    ("alpaca", {"instruction": "x", "output": 3}, "'output'"),
    ("chat", {"messages": [{"role": "user", "content": "hi"}]}, "last message must be the assistant"),
    ("chat", {"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]},
     r"messages\[0\]"),
])
def test_malformed_record_names_file_and_line(tmp_path, fmt, record, match):
    good = {"tofu": {"question": "a", "answer": "b"}, "alpaca": {"instruction": "a", "output": "b"},
            "chat": {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}}[fmt]
    path = write_lines(tmp_path / "bad.jsonl", [good, good, record])
    with pytest.raises(ValueError, match=match) as err:
        load_examples(path, fmt)
    assert "bad.jsonl:3" in str(err.value)


def test_invalid_json_line_and_missing_file_and_unknown_format(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"question": "a", "answer": "b"}\n{"question": oops}\n')
    with pytest.raises(ValueError, match=r"broken.jsonl:2: not valid JSON"):
        load_examples(path)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_examples(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="unknown data format 'csv'"):
        load_examples(path, "csv")


def test_labels_cover_exactly_the_response(tokenizer, tmp_path):
    ex = load_examples(write_lines(tmp_path / "d.jsonl", [{"question": "Where was Ann born?",
                                                            "answer": "Ann was born in Oslo."}]))
    assert chat_template_of(tokenizer) == PLAIN_CHAT_TEMPLATE  # the test tokenizer has none
    (enc,) = encode_examples(ex, tokenizer, PLAIN_CHAT_TEMPLATE, 128)
    n_prompt = sum(1 for y in enc.labels if y == IGNORE_INDEX)
    assert enc.labels[n_prompt:] == enc.ids[n_prompt:]
    assert tokenizer.decode(enc.ids[:n_prompt]).endswith("Answer:")  # the answer keeps its leading space
    assert tokenizer.decode(enc.ids[n_prompt:]) == " Ann was born in Oslo.<eos>\n"


def test_max_length_cuts_answer_and_rejects_prompt_only(tokenizer, tmp_path):
    ex = load_examples(write_lines(tmp_path / "d.jsonl", [{"question": "Where?", "answer": "x " * 200}]))
    (enc,) = encode_examples(ex, tokenizer, PLAIN_CHAT_TEMPLATE, 20)
    assert len(enc.ids) == 20 and enc.labels[-1] != IGNORE_INDEX
    with pytest.raises(ValueError, match=r"d.jsonl:1: .*max_length=2"):
        encode_examples(ex, tokenizer, PLAIN_CHAT_TEMPLATE, 2)


def test_collate_pads_right_and_idk_is_deterministic(tokenizer, tmp_path):
    ex = load_examples(write_lines(tmp_path / "d.jsonl", [{"question": "Q?", "answer": "A short one."},
                                                          {"question": "A longer question?", "answer": "B."}]))
    enc = encode_examples(ex, tokenizer, PLAIN_CHAT_TEMPLATE, 64)
    batch = collate(enc, [5, 7], tokenizer.pad_token_id)
    assert batch.index.tolist() == [5, 7] and batch.tokens == sum(len(e.ids) for e in enc)
    short = min(range(2), key=lambda i: len(enc[i].ids))
    assert (batch.labels[short, len(enc[short].ids):] == IGNORE_INDEX).all()
    assert (batch.attention_mask[short, len(enc[short].ids):] == 0).all()
    idk = with_idk_answers(ex, seed=3)
    assert [e.response for e in idk] == [e.response for e in with_idk_answers(ex, seed=3)]
    assert all(e.response in IDK_ANSWERS for e in idk) and idk[0].prompt == ex[0].prompt
