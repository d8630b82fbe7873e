"""Shared parts of the TOFU replication scripts (`replicate_transfer.py`, `replicate_unlearning.py`).

Every model reads the demo's plain "Question: …\\nAnswer:" format (Gemma-3-270m is a base model without a chat
template), so user models, deltas and directly fine-tuned models see the same text. Direct fine-tuning (the
upper bound) is LoRA (peft) or full fine-tuning with response-only loss on exactly the examples the delta is
trained on. Every finished stage writes its result to the run folder; a re-run skips it.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import random
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from crossmodel.eval.answerers import QuestionAnswerer
from crossmodel.eval.data import QAItem
from crossmodel.eval.paired import paired_nll_gap  # noqa: F401 (the scripts import it from here)
from crossmodel.eval.qa import run_qa
from crossmodel.io import atomic_write_bytes, atomic_write_json
from crossmodel.models import PLAIN_CHAT_TEMPLATE, load_model
from crossmodel.steer import DeltaModel, steer
from crossmodel.train.data import collate, encode_examples, load_examples
from crossmodel.train.loop import cosine_with_warmup
from crossmodel.vocab import TokenMap

TOFU = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tofu"


def log(msg: str) -> None:
    """Print with a timestamp (the scripts run for an hour in the background)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def finish(out: Path, table: str, start: float) -> None:
    """Write the run's table to `out`/table.md, print it, and log the wall time since `start`."""
    atomic_write_bytes(out / "table.md", (table + "\n").encode("utf-8"))
    print(table)
    log(f"done in {time.time() - start:.0f} s")


def machine() -> str:
    """One line naming the machine and the torch threads, for every table."""
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()}: {torch.get_num_threads()} torch thread(s), torch {torch.__version__}, {device}"


def tofu_records(data: Path, name: str) -> list[dict]:
    """The records of one TOFU file (JSON lines, as the shared copy stores them)."""
    path = data / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: point --data at the folder holding TOFU's JSON files")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(records: list[dict], path: Path) -> Path:
    """`records` as JSON lines at `path` (atomic)."""
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode("utf-8"))
    return path


def cached(path: Path, compute: Callable[[], dict], key: str | None = None) -> dict:
    """The JSON at `path`, or `compute()` written there first (the stage checkpoint of these scripts). A stored
    result made with another `key` (e.g. another delta) is computed again."""
    if path.is_file():
        value = json.loads(path.read_text())
        if value.get("key") == key:
            return value
    value = {**compute(), "key": key}
    atomic_write_json(path, value)
    return value


def delta_key(delta: DeltaModel) -> str:
    """A short digest of the settings a delta was trained with (keys the results that depend on it)."""
    settings = json.dumps(delta.config.data.get("train_config"), sort_keys=True)
    return hashlib.sha256(settings.encode()).hexdigest()[:8]


def qa_items(records: list[dict], question_key: str = "question") -> list[QAItem]:
    """Bare question / answer items (QuestionAnswerer adds the prompt format)."""
    return [QAItem(r[question_key], r["answer"]) for r in records]


def evaluate_qa(user: Any, deltas: list[tuple[DeltaModel, float, TokenMap | None]], parts: dict[str, list[QAItem]],
                out: Path, max_new_tokens: int, batch_size: int) -> dict[str, dict[str, float]]:
    """Summary (ROUGE-L recall, NLL, probability, …) per part for `user` steered by `deltas` (none = plain)."""
    answerer = QuestionAnswerer(steer(user, deltas=deltas), batch_size)
    return {part: run_qa(answerer, items, out, part=part, chat=False, max_new_tokens=max_new_tokens,
                         batch_size=batch_size)["summary"] for part, items in parts.items()}


def finetune(loaded: Any, data: str | Path, out: Path, *, method: str, epochs: int, lr: float, batch_size: int = 4,
             lora_rank: int = 16, max_length: int = 256, seed: int = 0) -> dict[str, Any]:
    """Fine-tune `loaded.model` in place on the TOFU-format file `data` (response-only loss, the plain QA format),
    with LoRA on every linear layer (merged afterwards) or all weights; AdamW, linear warm-up + cosine decay.
    Saves the fine-tuned model and tokenizer to `out` (safetensors) and returns the training log."""
    if method not in ("lora", "full"):
        raise ValueError(f"method={method!r}; choose lora or full")
    torch.manual_seed(seed)
    tokenizer = loaded.tokenizer
    encoded = encode_examples(load_examples(data, "tofu"), tokenizer, PLAIN_CHAT_TEMPLATE, max_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model = loaded.model
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0,
                                                 target_modules="all-linear"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = epochs * math.ceil(len(encoded) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(cosine_with_warmup, warmup=max(1, steps // 10), total=steps))  # the delta loop's schedule
    model.train()
    order, losses, start = list(range(len(encoded))), [], time.time()
    rng = random.Random(seed)
    for epoch in range(epochs):
        rng.shuffle(order)
        epoch_loss = []
        for i in range(0, len(order), batch_size):
            index = order[i:i + batch_size]
            batch = collate([encoded[j] for j in index], index, pad_id)
            loss = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            epoch_loss.append(loss.item())
        losses.append(sum(epoch_loss) / len(epoch_loss))
        log(f"  {loaded.name} {method} epoch {epoch + 1}/{epochs}: loss {losses[-1]:.4f} ({time.time() - start:.0f} s)")
    model.eval()
    if method == "lora":
        model = model.merge_and_unload()
    loaded.model = model
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    trainable = sum(p.numel() for p in params)
    return {"method": method, "epochs": epochs, "lr": lr, "batch_size": batch_size, "lora_rank": lora_rank,
            "steps": steps, "trainable_parameters": trainable, "epoch_loss": losses, "wall_s": time.time() - start,
            "examples": len(encoded)}


def load_finetuned(out: Path, name: str) -> Any:
    """A model saved by `finetune` (loaded like any HF directory), named for the tables."""
    loaded = load_model(out)
    loaded.name = name
    return loaded
