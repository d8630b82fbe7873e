"""Training data: TOFU (`question`/`answer`), Alpaca (`instruction`/`input`/`output`) and chat (`messages`)
records from JSON or JSON-lines files, tokenized under the template's chat template with the loss on the
response only, and padded into batches.

The format is named explicitly (`format=`) and each record is checked against it; a malformed record raises a
ValueError naming the file, the line and the fix, never a KeyError from deep inside the loop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from crossmodel.io import read_text
from crossmodel.models.batch import pad_rows
from crossmodel.train.templates import IGNORE_INDEX, encode_pair, idk_answer

FORMATS = ("tofu", "alpaca", "chat")


@dataclass(frozen=True)
class Example:
    """One training pair: chat messages before the answer, and the assistant's answer."""

    prompt: list[dict]
    response: str
    where: str = ""  # "file:line", for error messages
    extras: dict = field(default_factory=dict)  # e.g. TOFU's paraphrased_answer / perturbed_answer


@dataclass(frozen=True)
class Encoded:
    """Token ids of one example and its labels (IGNORE_INDEX outside the response)."""

    ids: list[int]
    labels: list[int]


@dataclass
class Batch:
    """Right-padded tensors of a few examples; `index` are the examples' positions in their dataset."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T), IGNORE_INDEX on prompt and padding
    index: torch.Tensor  # (B,)

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


def _records(path: Path, limit: int | None = None) -> list[tuple[str, object]]:
    """(where, record) for the first `limit` records of a JSON array or JSON-lines file (UTF-8, a BOM allowed);
    `where` is "file:line" for JSON lines and "file: element i (line n)" for an array (often one long line)."""
    text = read_text(path, "data file")
    decoder, records = json.JSONDecoder(), []
    stripped = text.lstrip()
    pos = len(text) - len(stripped)
    array = stripped.startswith("[")
    pos += 1 if array else 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or (array and text[pos] == "]") or (limit is not None and len(records) >= limit):
            break
        line = text.count("\n", 0, pos) + 1
        where = f"{path}: element {len(records)} (line {line})" if array else f"{path}:{line}"
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not valid JSON ({e.msg}); each line of a JSON-lines file (or each "
                             "element of a JSON array) must be one object") from None
        records.append((where, obj))
    return records


def _need_str(rec: dict, key: str, where: str, fmt: str, allow_empty: bool = False) -> str:
    value = rec.get(key)
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise ValueError(f"{where}: a record of format {fmt!r} needs a non-empty string {key!r} (got keys "
                         f"{sorted(rec)}); fix the record or pass the right format ({', '.join(FORMATS)})")
    return value


def _from_tofu(rec: dict, where: str) -> Example:
    question, answer = _need_str(rec, "question", where, "tofu"), _need_str(rec, "answer", where, "tofu")
    extras = {k: v for k, v in rec.items() if k not in ("question", "answer")}
    return Example([{"role": "user", "content": question}], answer, where, extras)


def _from_alpaca(rec: dict, where: str) -> Example:
    instruction = _need_str(rec, "instruction", where, "alpaca")
    extra = rec.get("input", "") or ""
    if not isinstance(extra, str):
        raise ValueError(f"{where}: 'input' of an alpaca record must be a string, got {type(extra).__name__}")
    user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    return Example([{"role": "user", "content": user}], _need_str(rec, "output", where, "alpaca"), where)


def _from_chat(rec: dict, where: str) -> Example:
    messages = rec.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: a 'chat' record needs a non-empty list 'messages' (got keys {sorted(rec)})")
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str)):
            raise ValueError(f"{where}: messages[{i}] must be {{'role': system|user|assistant, 'content': str}}, "
                             f"got {m!r}")
    if messages[-1]["role"] != "assistant" or len(messages) < 2:
        raise ValueError(f"{where}: the last message must be the assistant's answer (the loss falls on it), "
                         "after at least one user message")
    return Example([dict(m) for m in messages[:-1]], messages[-1]["content"], where)


PARSERS = {"tofu": _from_tofu, "alpaca": _from_alpaca, "chat": _from_chat}


def load_examples(path: str | Path, format: str = "tofu", limit: int | None = None) -> list[Example]:
    """The first `limit` (default: all) examples of a JSON array or JSON-lines file in `format` (tofu | alpaca |
    chat); records after them are not read, so a flaw there does not stop a run that does not use them."""
    path = Path(path)
    if format not in PARSERS:
        raise ValueError(f"unknown data format {format!r}; choose one of {sorted(PARSERS)}")
    if not path.is_file():
        raise FileNotFoundError(f"training data {path} does not exist; pass a JSON or JSON-lines file")
    examples = []
    for where, rec in _records(path, limit):
        if not isinstance(rec, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        examples.append(PARSERS[format](rec, where))
    if not examples:
        raise ValueError(f"{path} holds no records: give one JSON object per line (JSON lines) or a JSON array "
                         f"of objects in the {format!r} format")
    return examples


def with_idk_answers(examples: list[Example], seed: int = 0) -> list[Example]:
    """The same prompts with refusal answers (TOFU's idk loss), chosen deterministically per example."""
    return [replace(ex, response=idk_answer(i, seed)) for i, ex in enumerate(examples)]


def encode_examples(examples: list[Example], tokenizer, chat_template: str, max_length: int) -> list[Encoded]:
    """Token ids and response-only labels of every example (see `templates.encode_pair`)."""
    encoded = []
    for ex in examples:
        try:
            ids, labels = encode_pair(tokenizer, ex.prompt, ex.response, chat_template, max_length)
        except ValueError as e:
            raise ValueError(f"{ex.where}: {e}") from None
        encoded.append(Encoded(ids, labels))
    return encoded


def collate(items: list[Encoded], index: list[int], pad_id: int) -> Batch:
    """Right-pad `items` into one Batch (padding carries no loss and is masked out of attention)."""
    ids, mask = pad_rows([e.ids for e in items], pad_id)
    labels, _ = pad_rows([e.labels for e in items], IGNORE_INDEX)
    return Batch(ids, mask, labels, torch.tensor(index, dtype=torch.long))
