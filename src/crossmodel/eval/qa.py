"""Knowledge and instruction suites: how well a (steered) model reproduces reference responses.

`qa`: greedy generation, ROUGE-L recall and F1 against the reference, and the reference's NLL.
`nll`: the reference's NLL only (no generation: fast). A delta that transfers knowledge or instruction
following shows as a lower NLL (higher length-normalised probability) and a higher ROUGE-L.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from crossmodel.eval import metrics, resume
from crossmodel.eval.data import QAItem
from crossmodel.eval.scorer import Evaluable
from crossmodel.models.prompt import answer_prefix


def score_items(model: Evaluable, items: list[QAItem], chat: bool, max_new_tokens: int | None) -> list[dict]:
    """One record per item: the reference's NLL (mean over its tokens), its summed NLL and token count, and with
    `max_new_tokens` the greedy answer with its ROUGE-L recall and F1 (what `--suite qa` / `nll` store).

    With `chat` the reference is scored as the prompt format writes an answer: after the format's separator (the
    space of the plain format's "Answer: …"; nothing after ChatML's "assistant\n")."""
    tokenizer = getattr(model, "tokenizer", None)
    prefix = answer_prefix(tokenizer, getattr(model, "chat_template", None)) if chat and tokenizer else ""
    logprobs = model.score([it.prompt for it in items], [prefix + it.reference for it in items], chat=chat)
    records = [{"prompt": it.prompt, "reference": it.reference, "nll": metrics.mean_nll(lp),
                "nll_sum": float(-lp.double().sum()), "tokens": int(lp.numel())} for it, lp in zip(items, logprobs)]
    if max_new_tokens is not None:
        generations = model.generate([it.prompt for it in items], max_new_tokens=max_new_tokens, chat=chat)
        for rec, generated in zip(records, (g.strip() for g in generations)):
            rec.update(generated=generated, rouge_l_recall=metrics.rouge_l_recall(generated, rec["reference"]),
                       rouge_l_f1=metrics.rouge_l_f1(generated, rec["reference"]))
    return records


def summarize_qa(records: list[dict]) -> dict[str, float]:
    """Means over items: NLL (per-item mean over tokens), token-weighted NLL and its perplexity, probability
    exp(−NLL), and ROUGE-L recall / F1 when there were generations."""
    n = len(records)
    tokens = sum(r["tokens"] for r in records)
    nll = sum(r["nll"] for r in records) / n
    token_nll = sum(r["nll_sum"] for r in records) / tokens
    summary = {"nll": nll, "probability": sum(math.exp(-r["nll"]) for r in records) / n,
               "token_nll": token_nll, "perplexity": math.exp(token_nll), "items": n, "tokens": tokens}
    if "rouge_l_recall" in records[0]:
        summary["rouge_l_recall"] = sum(r["rouge_l_recall"] for r in records) / n
        summary["rouge_l_f1"] = sum(r["rouge_l_f1"] for r in records) / n
        summary["degenerate_rate"] = metrics.degenerate_rate([r["generated"] for r in records])
    return summary


def run_qa(model: Evaluable, items: list[QAItem], out_dir: str | Path, *, part: str = "qa", chat: bool = True,
           generate: bool = True, max_new_tokens: int = 128, batch_size: int = 4) -> dict[str, Any]:
    """Evaluate `items` (resuming from `out_dir`); `generate=False` is the NLL-only suite."""
    if not items:
        raise ValueError("the QA file has no items")
    done = resume.load_part(out_dir, part)
    if done is None:
        limit = max_new_tokens if generate else None
        records = resume.process(out_dir, part, items, lambda b: score_items(model, b, chat, limit), batch_size)
        done = {"summary": summarize_qa(records), "records": records}
        resume.save_part(out_dir, part, done)
    return done
