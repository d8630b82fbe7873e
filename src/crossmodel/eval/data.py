"""Evaluation data: the four TOFU evaluation splits, and question/answer or instruction files.

TOFU (Maini et al., 2024) evaluates on `{forget}_perturbed.json`, `retain_perturbed.json`,
`real_authors_perturbed.json` and `world_facts_perturbed.json` (locuslab/tofu `config/eval_everything.yaml`).
Records are read with `crossmodel.train.data.load_examples`, so evaluation and training accept the same files
(JSON arrays or JSON lines; formats tofu | alpaca | chat) with the same error messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crossmodel.train.data import load_examples

# split name -> (file name pattern, kind); kinds decide which answer is "paraphrased" and how Prob. is computed
TOFU_SPLITS = {
    "forget": ("{forget}_perturbed.json", "forget"),
    "retain": ("retain_perturbed.json", "retain"),
    "real_authors": ("real_authors_perturbed.json", "options"),
    "world_facts": ("world_facts_perturbed.json", "options"),
}


@dataclass(frozen=True)
class TofuItem:
    """One TOFU evaluation question with its answers."""

    question: str
    answer: str
    paraphrased: str  # the paraphrased answer; the answer itself for real authors / world facts
    perturbed: tuple[str, ...]  # wrong answers, for the truth ratio (and options for Prob.)


@dataclass(frozen=True)
class QAItem:
    """One prompt (question or instruction) and its reference response."""

    prompt: str
    reference: str


def _single_turn(prompt: list[dict], where: str) -> str:
    if len(prompt) != 1 or prompt[0]["role"] != "user":
        raise ValueError(f"{where}: evaluation takes single-turn records (one user message before the answer); "
                         "split multi-turn conversations into one record per turn")
    return prompt[0]["content"]


def tofu_file(data_dir: str | Path, split: str, forget: str = "forget10") -> Path:
    """The file of one TOFU split inside `data_dir` (FileNotFoundError naming the file and the fix)."""
    if split not in TOFU_SPLITS:
        raise ValueError(f"unknown TOFU split {split!r}; choose from {sorted(TOFU_SPLITS)}")
    path = Path(data_dir) / TOFU_SPLITS[split][0].format(forget=forget)
    if not path.is_file():
        raise FileNotFoundError(f"TOFU split {split!r} needs {path}; point --data at the folder holding the TOFU "
                                "JSON files, or leave the split out with --split")
    return path


def load_tofu_split(path: str | Path, kind: str, limit: int | None = None) -> list[TofuItem]:
    """The first `limit` records of a TOFU `*_perturbed.json` file; `kind` is forget | retain | options."""
    if kind not in ("forget", "retain", "options"):
        raise ValueError(f"kind={kind!r}; choose forget, retain or options")
    items = []
    for ex in load_examples(path, format="tofu", limit=limit):
        perturbed = ex.extras.get("perturbed_answer")
        if isinstance(perturbed, str):
            perturbed = [perturbed]
        if not perturbed or not all(isinstance(p, str) and p.strip() for p in perturbed):
            raise ValueError(f"{ex.where}: a TOFU evaluation record needs a non-empty list 'perturbed_answer' "
                             "(use the *_perturbed.json files)")
        paraphrased = ex.response if kind == "options" else ex.extras.get("paraphrased_answer")
        if not isinstance(paraphrased, str) or not paraphrased.strip():
            raise ValueError(f"{ex.where}: a {kind} record needs a non-empty 'paraphrased_answer'")
        items.append(TofuItem(_single_turn(ex.prompt, ex.where), ex.response, paraphrased, tuple(perturbed)))
    return items


def load_qa(path: str | Path, format: str = "tofu", limit: int | None = None) -> list[QAItem]:
    """The first `limit` prompt/reference pairs of a QA (tofu), instruction (alpaca) or chat file."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit} must be >= 1")
    return [QAItem(_single_turn(ex.prompt, ex.where), ex.response)
            for ex in load_examples(path, format=format, limit=limit)]
