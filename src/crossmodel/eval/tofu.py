"""The TOFU suite (Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for LLMs"), metric for metric as
the locuslab/tofu evaluation code computes it (`evaluate_util.py`, `aggregate_eval_stat.py`):

per split (forget, retain, real authors, world facts): ROUGE-L recall of the greedy answer, answer probability,
truth ratio; over the run: model utility (harmonic mean of the nine retain / real-author / world-fact numbers)
and, given the forget-split results of a retain-only model, forget quality (KS-test p-value).
docs/EVALUATION.md states every formula and where we depart from the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossmodel.eval import metrics, resume
from crossmodel.eval.data import TOFU_SPLITS, TofuItem, load_tofu_split, tofu_file
from crossmodel.eval.scorer import Evaluable

UTILITY_SPLITS = ("retain", "real_authors", "world_facts")
SPLIT_METRICS = ("rouge_l_recall", "probability", "truth_ratio")


def _score_items(model: Evaluable, items: list[TofuItem], chat: bool, max_new_tokens: int,
                 eos: str | None = None) -> list[dict]:
    """Per-item generations and NLLs for a batch of items (one `score` call for all their answers); with `eos`,
    every scored answer ends with it (the end-of-answer token counts, as in locuslab/open-unlearning)."""
    generations = [g.strip() for g in model.generate([it.question for it in items], max_new_tokens=max_new_tokens,
                                                     chat=chat)]
    prompts, answers = [], []
    for it in items:  # the answer, its paraphrase, then each perturbed answer
        for text in (it.answer, it.paraphrased, *it.perturbed):
            prompts.append(it.question)
            answers.append(text + (eos or ""))
    nlls = iter(metrics.mean_nll(lp) for lp in model.score(prompts, answers, chat=chat))
    records = []
    for it, generated in zip(items, generations):
        answer_nll, paraphrased_nll = next(nlls), next(nlls)
        perturbed_nlls = [next(nlls) for _ in it.perturbed]
        records.append({"question": it.question, "answer": it.answer, "generated": generated,
                        "rouge_l_recall": metrics.rouge_l_recall(generated, it.answer),
                        "answer_nll": answer_nll, "paraphrased_nll": paraphrased_nll,
                        "perturbed_nll": perturbed_nlls})
    return records


def summarize_split(records: list[dict], kind: str) -> dict[str, float]:
    """ROUGE-L recall, probability and truth ratio of one split from its per-item records."""
    n = len(records)
    if kind == "options":  # the correct answer's share among correct + perturbed (length-normalised each)
        probability = sum(metrics.normalized_probability(r["answer_nll"], r["perturbed_nll"]) for r in records) / n
    else:
        probability = sum(metrics.answer_probability(r["answer_nll"]) for r in records) / n
    ratios = [metrics.truth_ratio(r["paraphrased_nll"], r["perturbed_nll"]) for r in records]
    return {"rouge_l_recall": sum(r["rouge_l_recall"] for r in records) / n, "probability": probability,
            "truth_ratio": metrics.truth_ratio_score(ratios, forget=kind == "forget"),
            "degenerate_rate": metrics.degenerate_rate([r["generated"] for r in records]), "items": n}


def evaluate_split(model: Evaluable, items: list[TofuItem], kind: str, *, out_dir: str | Path, part: str,
                   chat: bool = True, max_new_tokens: int = 200, batch_size: int = 4,
                   eos: str | None = None) -> dict[str, Any]:
    """Evaluate one split (resuming from `out_dir`); returns {"summary": ..., "records": [...]}."""
    if not items:
        raise ValueError(f"TOFU split {part!r} has no items")
    done = resume.load_part(out_dir, part)
    if done is None:
        records = resume.process(out_dir, part, items,
                                 lambda batch: _score_items(model, batch, chat, max_new_tokens, eos), batch_size)
        done = {"kind": kind, "summary": summarize_split(records, kind), "records": records}
        resume.save_part(out_dir, part, done)
    return done


def forget_ratios(split_result: dict[str, Any]) -> list[float]:
    """The truth ratios R of every item of a (forget) split result."""
    return [metrics.truth_ratio(r["paraphrased_nll"], r["perturbed_nll"]) for r in split_result["records"]]


def summarize_run(splits: dict[str, dict[str, Any]], reference_forget: dict[str, Any] | None = None) -> dict:
    """Per-split summaries, model utility (when retain, real_authors and world_facts are all there) and forget
    quality (when the forget split and a reference model's forget split are both there)."""
    summary: dict[str, Any] = {"splits": {name: s["summary"] for name, s in splits.items()}}
    if all(name in splits for name in UTILITY_SPLITS):
        nine = [splits[name]["summary"][m] for name in UTILITY_SPLITS for m in SPLIT_METRICS]
        summary["model_utility"] = metrics.harmonic_mean(nine)
    if "forget" in splits and reference_forget is not None:
        summary.update(metrics.ks_forget_quality(forget_ratios(splits["forget"]), forget_ratios(reference_forget)))
    return summary


def run_tofu(model: Evaluable, files: dict[str, str | Path], out_dir: str | Path, *, chat: bool = True,
             max_new_tokens: int = 200, limit: int | None = None, batch_size: int = 4,
             reference_forget: dict[str, Any] | None = None, eos: str | None = None) -> dict[str, Any]:
    """Run the TOFU suite over `files` (split name -> *_perturbed.json), writing one JSON per split into
    `out_dir` (finished splits are skipped on a re-run). With `eos` (the model's EOS text) every scored answer
    ends with it. Returns `summarize_run(...)`."""
    unknown = set(files) - set(TOFU_SPLITS)
    if unknown:
        raise ValueError(f"unknown TOFU splits {sorted(unknown)}; choose from {sorted(TOFU_SPLITS)}")
    results = {}
    for name, path in files.items():
        kind = TOFU_SPLITS[name][1]
        items = load_tofu_split(path, kind, limit)
        results[name] = evaluate_split(model, items, kind, out_dir=out_dir, part=f"tofu_{name}", chat=chat,
                                       max_new_tokens=max_new_tokens, batch_size=batch_size, eos=eos)
    return summarize_run(results, reference_forget)


def tofu_files(data: str | Path, splits: tuple[str, ...] = tuple(TOFU_SPLITS),
               forget: str = "forget10") -> dict[str, Path]:
    """The standard file of each split in a TOFU folder (errors name any missing file)."""
    return {name: tofu_file(data, name, forget) for name in splits}
