"""IFEval (Zhou et al. 2023, "Instruction-Following Evaluation for Large Language Models", arXiv 2311.07911):
greedy answers to 541 prompts with verifiable instructions, scored by the maintained checker of the `lm-eval`
package (`lm_eval/tasks/ifeval/`, a dependency, not a copy), strict and loose, per prompt and per instruction.

The checker has offline traps, handled in `load_checker`: `instructions_util` calls `nltk.download("punkt_tab")`
at import unless NLTK finds that data, so we point NLTK at it first and refuse (one error, naming where to get
it) when it is missing; and it draws random numbers (an instruction whose `letter` is not a letter gets a random
one; `langdetect` is random), so every response is checked under a fixed seed: scores are reproducible and do
not depend on the order or the number of prompts. docs/EVALUATION.md has the metrics and the measured figures.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from crossmodel.eval import resume
from crossmodel.eval.scorer import PlainModel
from crossmodel.io import atomic_write_bytes, read_text
from crossmodel.models.prompt import chat_template_of
from crossmodel.steer import Steered, steer

RESPONSES = "responses.jsonl"
RECORD_KEYS = ("key", "prompt", "instruction_id_list", "response", "tokens", "words", "eos_stop", "follow_strict",
               "follow_loose", "prompt_strict", "prompt_loose")  # one line of responses.jsonl, in this order
PART = "ifeval"
SEED = 0  # for the checker's own random draws (see the module docstring)
CHECKER_MODULES = ("lm_eval", "nltk", "langdetect", "immutabledict")
INSTALL = "pip install 'crossmodel[ifeval]' (from a checkout: pip install -e '.[ifeval]')"
PUNKT = "tokenizers/punkt_tab/english"  # the data NLTK's sentence splitter reads (PunktTokenizer("english"))
GET_PUNKT = ("on a machine with internet `python -m nltk.downloader -d DIR punkt_tab` fetches it; the shared "
             "data folder has a copy in data/nltk_data")


@dataclass(frozen=True)
class IFEvalItem:
    """One IFEval prompt and its verifiable instructions (`kwargs[i]` are the arguments of instruction i)."""

    key: int | str
    prompt: str
    instruction_ids: tuple[str, ...]
    kwargs: tuple[dict, ...]
    where: str = ""  # "file:line", for error messages


def _item(rec: Any, where: str) -> IFEvalItem:
    expected = "an object with 'key', 'prompt', 'instruction_id_list' and 'kwargs' (one dict per instruction)"
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected {expected}, got {type(rec).__name__}")
    key, prompt, ids, kwargs = (rec.get(k) for k in ("key", "prompt", "instruction_id_list", "kwargs"))
    if (not isinstance(key, (int, str)) or not isinstance(prompt, str) or not prompt.strip()
            or not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids)
            or not isinstance(kwargs, list) or len(kwargs) != len(ids) or not all(isinstance(k, dict) for k in kwargs)):
        raise ValueError(f"{where}: an IFEval record must be {expected} (got keys {sorted(rec)}); is this the "
                         "IFEval input_data.jsonl?")
    return IFEvalItem(key, prompt, tuple(ids), tuple(kwargs), where)


def load_ifeval(path: str | Path, limit: int | None = None) -> list[IFEvalItem]:
    """The first `limit` prompts of an IFEval JSON-lines file (google-research's `input_data.jsonl` format)."""
    path = Path(path)
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit} must be >= 1")
    if not path.is_file():
        raise FileNotFoundError(f"IFEval data {path} does not exist; pass the IFEval prompts (JSON lines, "
                                "e.g. data/ifeval/input_data.jsonl)")
    items, keys = [], set()
    for number, line in enumerate(read_text(path, "IFEval data file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not valid JSON ({err.msg}); each line must be one JSON "
                             "object") from None
        item = _item(rec, f"{path}:{number}")
        if item.key in keys:
            raise ValueError(f"{item.where}: key {item.key!r} appears twice; IFEval keys must be unique")
        keys.add(item.key)
        items.append(item)
    if not items:
        raise ValueError(f"{path} holds no records: give one IFEval JSON object per line")
    return items[:limit]


@contextlib.contextmanager
def _seeded(langdetect: Any, seed: int) -> Iterator[None]:
    """Run with `random` and langdetect seeded, restoring the caller's random state afterwards."""
    state, old = random.getstate(), langdetect.DetectorFactory.seed
    random.seed(seed)
    langdetect.DetectorFactory.seed = seed
    try:
        yield
    finally:
        random.setstate(state)
        langdetect.DetectorFactory.seed = old


class IFEvalChecker:
    """lm-eval's IFEval checker (`lm_eval.tasks.ifeval.utils`), loaded by `load_checker`."""

    def __init__(self, utils: Any, registry: dict, count_words: Any, langdetect: Any):
        self.utils, self.registry, self.count_words, self.langdetect = utils, registry, count_words, langdetect

    def check_ids(self, items: list[IFEvalItem]) -> None:
        """Refuse items whose instruction ids the checker does not know, naming the first one."""
        for item in items:
            unknown = [i for i in item.instruction_ids if i not in self.registry]
            if unknown:
                raise ValueError(f"{item.where}: unknown IFEval instruction {unknown[0]!r}; the checker knows "
                                 f"{len(self.registry)} (e.g. {', '.join(sorted(self.registry)[:3])}, ...)")

    def score(self, item: IFEvalItem, response: str) -> dict[str, Any]:
        """Per-instruction follow flags, strict and loose, and whether the prompt followed all of them."""
        example = self.utils.InputExample(key=item.key, instruction_id_list=list(item.instruction_ids),
                                          prompt=item.prompt, kwargs=[dict(k) for k in item.kwargs])
        # the same seed for both, so strict and loose check the same drawn arguments (loose ⊇ strict)
        with _seeded(self.langdetect, SEED):
            strict = self.utils.test_instruction_following_strict(example, response).follow_instruction_list
        with _seeded(self.langdetect, SEED):
            loose = self.utils.test_instruction_following_loose(example, response).follow_instruction_list
        return {"follow_strict": [bool(f) for f in strict], "follow_loose": [bool(f) for f in loose],
                "prompt_strict": all(strict), "prompt_loose": all(loose)}

    def words(self, text: str) -> int:
        """Words as the checker counts them for its length instructions (runs of \\w characters)."""
        return int(self.count_words(text))


def load_checker(nltk_data: str | Path | None = None) -> IFEvalChecker:
    """Import lm-eval's IFEval checker without letting it download: NLTK must find `punkt_tab` first.

    `nltk_data` is put first on NLTK's search path (NLTK also reads $NLTK_DATA and its usual folders).
    """
    missing = [m for m in CHECKER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise RuntimeError(f"IFEval scoring needs lm-eval's checker ({', '.join(missing)} not installed); {INSTALL}")
    import langdetect
    import nltk

    if nltk_data is not None:
        folder = Path(nltk_data).expanduser()
        if not (folder / PUNKT).is_dir():
            raise FileNotFoundError(f"--nltk-data {folder} holds no {PUNKT}/ (NLTK's sentence splitter data, "
                                    f"needed by the IFEval checker); {GET_PUNKT}")
        if str(folder) not in nltk.data.path:
            nltk.data.path.insert(0, str(folder))
    try:
        nltk.data.find(PUNKT)
    except LookupError:
        raise FileNotFoundError(f"NLTK's punkt_tab data (needed by the IFEval checker) is not in any of "
                                f"{nltk.data.path}; pass --nltk-data DIR or set NLTK_DATA=DIR, DIR holding "
                                f"{PUNKT}/; {GET_PUNKT}") from None
    # safe now: instructions_util only downloads when NLTK cannot find punkt_tab
    from lm_eval.tasks.ifeval import instructions_registry, instructions_util, utils

    return IFEvalChecker(utils, dict(instructions_registry.INSTRUCTION_DICT), instructions_util.count_words,
                         langdetect)


def _generator(model: Any) -> Steered:
    """Something with `generate_ids`: a steered model as it is; a plain one as a steered model without deltas
    (token for token the plain model's greedy output), so every variant reports where its answers stopped."""
    if isinstance(model, Steered):
        return model
    if isinstance(model, PlainModel):
        # the PlainModel itself (it has .model and .tokenizer), as steer() takes a LoadedModel
        return steer(model, chat_template=chat_template_of(model.tokenizer))
    raise TypeError(f"the ifeval suite generates with a PlainModel or a steered model, not {type(model).__name__}")


def _answer_batch(generator: Any, checker: IFEvalChecker, items: list[IFEvalItem], chat: bool,
                  max_new_tokens: int) -> list[dict]:
    """Greedy answers to `items`, with their length, whether they ended by EOS, and the checker's verdicts."""
    rows = generator.generate_ids([it.prompt for it in items], max_new_tokens, chat=chat).tolist()  # (B, steps)
    eos = set(generator.eos_ids)
    records = []
    for item, row in zip(items, rows):
        end = next((i for i, token in enumerate(row) if token in eos), None)  # after EOS a row holds padding
        tokens = row if end is None else row[:end]
        response = generator.text([tokens])[0].strip()
        record = {"key": item.key, "prompt": item.prompt, "instruction_id_list": list(item.instruction_ids),
                  "response": response, "tokens": len(tokens), "words": checker.words(response),
                  "eos_stop": end is not None, **checker.score(item, response)}
        records.append({k: record[k] for k in RECORD_KEYS})
    return records


def summarize_ifeval(records: list[dict]) -> dict[str, Any]:
    """Prompt- and instruction-level accuracy (strict, loose), per instruction type, length and EOS-stop rate."""
    n = len(records)
    strict = [f for r in records for f in r["follow_strict"]]
    loose = [f for r in records for f in r["follow_loose"]]
    per_type: dict[str, dict[str, float]] = {}
    for r in records:
        for kind, s, l in zip(r["instruction_id_list"], r["follow_strict"], r["follow_loose"]):
            entry = per_type.setdefault(kind, {"n": 0, "strict": 0.0, "loose": 0.0})
            entry["n"] += 1
            entry["strict"] += s
            entry["loose"] += l
    for entry in per_type.values():
        entry["strict"] /= entry["n"]
        entry["loose"] /= entry["n"]
    return {"prompts": n, "instructions": len(strict),
            "prompt_level_strict_acc": sum(r["prompt_strict"] for r in records) / n,
            "prompt_level_loose_acc": sum(r["prompt_loose"] for r in records) / n,
            "instruction_level_strict_acc": sum(strict) / len(strict),
            "instruction_level_loose_acc": sum(loose) / len(loose),
            "eos_stop_rate": sum(r["eos_stop"] for r in records) / n,
            "mean_answer_tokens": sum(r["tokens"] for r in records) / n,
            "mean_answer_words": sum(r["words"] for r in records) / n,
            "per_instruction_type": dict(sorted(per_type.items()))}


def read_responses(out_dir: str | Path) -> list[dict] | None:
    """The per-prompt records of a finished IFEval variant folder, or None if it has none."""
    path = Path(out_dir) / RESPONSES
    if not path.is_file():
        return None
    return [json.loads(line) for line in read_text(path, "IFEval responses file").splitlines() if line.strip()]


def run_ifeval(model: Any, items: list[IFEvalItem], out_dir: str | Path, checker: IFEvalChecker, *,
               chat: bool = True, max_new_tokens: int = 256, batch_size: int = 4) -> dict[str, Any]:
    """Answer and score `items` (resuming from `out_dir`); write `responses.jsonl`; return the summary."""
    if not items:
        raise ValueError("the IFEval file has no items")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    checker.check_ids(items)
    done = resume.load_part(out_dir, PART)
    if done is None or read_responses(out_dir) is None:
        generator = _generator(model)
        records = resume.process(out_dir, PART, items,
                                 lambda b: _answer_batch(generator, checker, b, chat, max_new_tokens), batch_size)
        # the same key order whether the records come from this run or from a checkpoint
        lines = "".join(json.dumps({k: r[k] for k in RECORD_KEYS}, ensure_ascii=False) + "\n" for r in records)
        atomic_write_bytes(Path(out_dir) / RESPONSES, lines.encode("utf-8"))
        done = {"summary": {**summarize_ifeval(records), "max_new_tokens": max_new_tokens}}
        resume.save_part(out_dir, PART, done)
    return done["summary"]
