"""`crossmodel demo`: the whole method on real small models, as one recipe that reads top to bottom.

1. pull the models, 2. write fictitious-author facts (TOFU's format), 3. train a knowledge delta (SFT) next to
the template, 4. train an unlearning delta (idk: refusals on the forgotten authors, CE on the kept ones) next to
"template + knowledge delta", so that it makes a model that knows the facts forget a subset of the authors,
5. steer every user model (other sizes, other vocabularies, token maps built on the fly) with the knowledge delta,
then with both deltas, and measure ROUGE-L recall of greedy answers, their degeneration rate and the answers' NLL,
6. write tables, results.json and plots into one report folder.

Prompt format: one plain "Question: …\\nAnswer:" format for every model (Gemma-3-270m is a base model without a
chat template), so the user models and the delta read the same text; each tokenizer adds its own BOS.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from crossmodel.eval.answerers import Answerer
from crossmodel.eval.data import QAItem
from crossmodel.eval.qa import run_qa, summarize_qa
from crossmodel.eval.report import markdown_table, plot_qa
from crossmodel.io import atomic_write_bytes, atomic_write_json
from crossmodel.models import PLAIN_CHAT_TEMPLATE, PLAIN_PROMPT, ZOO, is_pulled, load_model, resolve, slug
from crossmodel.steer import DeltaModel, steer, token_map_for
from crossmodel.train import StackedTemplate, TrainConfig, generate_facts, train_or_reuse
from crossmodel.vocab import MAPPERS, TokenMap

TEMPLATE = "smollm2-135m-instruct"
USER_MODELS = ("smollm2-135m-instruct", "gemma-3-270m", "qwen2.5-coder-0.5b-instruct")
VARIANTS = ("before", "knowledge", "knowledge+unlearn")
PLOT_BARS = [("before", "before", "all"), ("+K", "knowledge", "all"), ("+K\nforget", "knowledge", "forget"),
             ("+K+U\nforget", "knowledge+unlearn", "forget"), ("+K+U\nretain", "knowledge+unlearn", "retain")]
_LOADING = threading.Lock()
RESULTS, REPORT, FACTS, FORGET, RETAIN = "results.json", "report.md", "facts.jsonl", "forget.jsonl", "retain.jsonl"


@dataclass(frozen=True)
class DemoConfig:
    """Settings of `crossmodel demo`; the defaults finish in about ten minutes on two CPU cores."""

    out: str = field(default="crossmodel-demo", metadata={"help": "report folder (reused runs resume)"})
    models: tuple[str, ...] = field(default=USER_MODELS, metadata={"help": "user models steered by the deltas"})
    template: str = field(default=TEMPLATE, metadata={"help": "the model the deltas are trained next to"})
    facts: int = field(default=6, metadata={"help": "fictitious authors (5 facts each)"})
    forget: int = field(default=2, metadata={"help": "authors the unlearning delta makes the models forget"})
    epochs: int = field(default=10, metadata={"help": "epochs of the knowledge delta"})
    unlearn_epochs: int = field(default=10, metadata={"help": "epochs of the unlearning delta"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate of the knowledge delta"})
    unlearn_lr: float = field(default=6e-3, metadata={"help": "peak learning rate of the unlearning delta"})
    # both deltas are also trained as language models by themselves (delta_lm_weight 1): across vocabularies a delta
    # trained only through the combination boosts its answer's pieces as a bag, and the user model repeats them
    # ("Letters Letters Letters"); docs/RESULTS.md, "crossmodel demo"
    knowledge_options: tuple[tuple[str, Any], ...] = field(default=(("delta_lm_weight", 1.0),), metadata={
        "help": "further TrainConfig keys of the knowledge run"})
    unlearn_task: str = field(default="idk", metadata={"help": "the unlearning loss (a train task)"})
    # idk with the retain term weighted 2: the setting of the demo sweeps in docs/RESULTS.md (grad_diff, npo, simnpo
    # and undial forgot by collapsing into repeated words there; idk answers with fluent refusals)
    unlearn_options: tuple[tuple[str, Any], ...] = field(default=(("retain_weight", 2.0), ("delta_lm_weight", 1.0)),
                                                         metadata={
        "help": "further TrainConfig keys of the unlearning run, e.g. (('retain_loss', 'kl'),)"})
    alpha: float = field(default=1.0, metadata={"help": "delta strength when steering the user models"})
    map_mode: str = field(default="normalized", metadata={"help": "token map mode for other vocabularies"})
    delta_layers: int = 2
    delta_d_model: int = 256
    max_new_tokens: int = 32
    batch_size: int = 6
    seed: int = 0
    parallel: int = field(default=2, metadata={"help": "user models evaluated at once (one CPU thread each)"})

    def __post_init__(self):
        if not self.models:
            raise ValueError("DemoConfig.models is empty: give at least one user model (--models NAME,...)")
        if not 1 <= self.forget < self.facts:
            raise ValueError(f"DemoConfig.forget={self.forget} must be in [1, facts={self.facts}): the unlearning "
                             "delta needs some authors to forget and some to keep")
        if self.map_mode not in MAPPERS:
            raise ValueError(f"DemoConfig.map_mode={self.map_mode!r}; choose one of {sorted(MAPPERS)}")
        for name in ("epochs", "unlearn_epochs", "max_new_tokens", "batch_size", "delta_layers", "delta_d_model",
                     "parallel"):
            if getattr(self, name) < 1:
                raise ValueError(f"DemoConfig.{name}={getattr(self, name)} must be >= 1")
        if not min(self.lr, self.unlearn_lr, self.alpha) > 0:
            raise ValueError(f"DemoConfig.lr={self.lr}, unlearn_lr={self.unlearn_lr} and alpha={self.alpha} "
                             "must be > 0")


# ---- 2. data --------------------------------------------------------------------------------------------------
def write_data(records: list[dict], forget_records: int, out: Path) -> dict[str, Path]:
    """facts / forget (the first `forget_records`) / retain (the rest) as JSON lines in `out`."""
    parts = {FACTS: records, FORGET: records[:forget_records], RETAIN: records[forget_records:]}
    for name, rows in parts.items():
        atomic_write_bytes(out / name, "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8"))
    return {name: out / name for name in parts}


# ---- 3./4. the two deltas -------------------------------------------------------------------------------------
def _train_config(cfg: DemoConfig, out: Path, **overrides: Any) -> TrainConfig:
    return TrainConfig(template=cfg.template, out=str(out), delta_layers=cfg.delta_layers,
                       delta_d_model=cfg.delta_d_model, delta_heads=4, batch_size=4, max_length=128,
                       save_every=0, seed=cfg.seed, progress=True, **overrides)


# ---- 5. steering and evaluation -------------------------------------------------------------------------------
def _subset(records: list[dict], index: range) -> dict[str, float]:
    return summarize_qa([records[i] for i in index])


def evaluate_model(spec: str, deltas: dict[str, DeltaModel], items: list[QAItem], n_forget: int, cfg: DemoConfig,
                   out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """One user model: plain, + knowledge delta, + both deltas; summaries on all / forget / retain facts."""
    with _LOADING:  # transformers' loading is not thread-safe (tied heads come out untied): one load at a time
        user = load_model(spec)
    by_vocab: dict[str, TokenMap | None] = {}  # both deltas share the template's vocabulary: one map
    for d in deltas.values():
        if d.config.vocab_fingerprint not in by_vocab:
            by_vocab[d.config.vocab_fingerprint] = token_map_for(user, d, cfg.map_mode)
    maps = {name: by_vocab[d.config.vocab_fingerprint] for name, d in deltas.items()}
    coverage = maps["knowledge"].coverage() if maps["knowledge"] is not None else None
    entries = {"before": [], "knowledge": ["knowledge"], "knowledge+unlearn": ["knowledge", "unlearn"]}
    result: dict[str, Any] = {"model": spec, "vocab_fingerprint": user.fingerprint, "map": coverage, "variants": {}}
    for variant, names in entries.items():
        start = time.time()
        steered = steer(user, deltas=[(deltas[n], cfg.alpha, maps[n]) for n in names])
        done = run_qa(Answerer(steered, cfg.batch_size), items, out / variant, chat=False,
                      max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
        records = done["records"]
        result["variants"][variant] = {"all": done["summary"], "forget": _subset(records, range(n_forget)),
                                       "retain": _subset(records, range(n_forget, len(records))),
                                       "answers": [r["generated"] for r in records]}
        log(f"  {spec} {variant}: ROUGE-L {done['summary']['rouge_l_recall']:.3f}, "
            f"NLL {done['summary']['nll']:.3f} ({time.time() - start:.0f} s)")
    del user
    return result


def _eval_key(cfg: DemoConfig, deltas: dict[str, DeltaModel]) -> str:
    import hashlib

    settings = {name: d.config.data.get("train_config") for name, d in deltas.items()}
    settings.update(alpha=cfg.alpha, map_mode=cfg.map_mode, max_new_tokens=cfg.max_new_tokens, facts=cfg.facts,
                    forget=cfg.forget, seed=cfg.seed)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


# ---- 6. report ------------------------------------------------------------------------------------------------
def _cell(summary: dict[str, float], key: str) -> str:
    return f"{summary[key]:.3f}"


def knowledge_table(results: dict[str, Any]) -> str:
    """Rows = user models: ROUGE-L recall and answer NLL on all facts, before and with the knowledge delta."""
    lines = ["| model | vocabulary | ROUGE-L before | ROUGE-L +delta | NLL before | NLL +delta |",
             "|---|---|---|---|---|---|"]
    for r in results["models"]:
        before, after = r["variants"]["before"]["all"], r["variants"]["knowledge"]["all"]
        vocab = ("template's" if r["map"] is None
                 else f"other (map: {r['map']['mapped']}/{r['map']['tokenizer_rows']})")
        lines.append(f"| {r['model']} | {vocab} | {_cell(before, 'rouge_l_recall')} | "
                     f"{_cell(after, 'rouge_l_recall')} | {_cell(before, 'nll')} | {_cell(after, 'nll')} |")
    return "\n".join(lines)


def unlearning_table(results: dict[str, Any]) -> str:
    """Rows = user models: ROUGE-L recall on the forget and retain authors, knowledge delta vs both deltas."""
    lines = ["| model | forget ROUGE-L +K | forget ROUGE-L +K+U | retain ROUGE-L +K | retain ROUGE-L +K+U | "
             "forget NLL +K → +K+U | retain NLL +K → +K+U | degenerate forget answers +K+U |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results["models"]:
        k, u = r["variants"]["knowledge"], r["variants"]["knowledge+unlearn"]
        cells = [_cell(v[part], "rouge_l_recall") for part in ("forget", "retain") for v in (k, u)]
        cells += [f"{_cell(k[part], 'nll')} → {_cell(u[part], 'nll')}" for part in ("forget", "retain")]
        cells.append(f"{u['forget'].get('degenerate_rate', float('nan')):.0%}")
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def examples_table(results: dict[str, Any], question: int, variants: tuple[str, ...]) -> str:
    """One question's answer by every model and variant."""
    lines = ["| model | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants)]
    for r in results["models"]:
        cells = [r["variants"][v]["answers"][question].replace("|", "/") for v in variants]
        lines.append(f"| {r['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(results: dict[str, Any], out: Path) -> Path:
    """results.json, report.md and one plot per model (eval's plot_qa) in `out`."""
    atomic_write_json(out / RESULTS, results)
    facts, n_forget = results["facts"], results["forget_records"]
    lines = ["# crossmodel demo", "", f"Template: `{results['config']['template']}`; {len(facts)} facts about "
             f"{results['config']['facts']} fictitious authors; the unlearning delta forgets the first "
             f"{results['config']['forget']} authors ({n_forget} facts). Wall time: {results['wall_s']:.0f} s.",
             "", "## Knowledge transfer (one delta, trained once against the template)", "",
             knowledge_table(results), "", f"Question: {facts[n_forget]['question']}  ",
             f"Reference: {facts[n_forget]['answer']}", "", examples_table(results, n_forget, VARIANTS[:2]), "",
             "## Unlearning (second delta K+U composed with the first, K)", "", unlearning_table(results), "",
             f"Forget question: {facts[0]['question']}  ",
             f"Reference: {facts[0]['answer']}", "", examples_table(results, 0, VARIANTS[1:]), ""]
    for r in results["models"]:
        name = slug(r["model"])
        variants = {label: r["variants"][v][part] for label, v, part in PLOT_BARS}
        plot = plot_qa(variants, out / f"{name}.png", title=f"{r['model']}: knowledge delta K, unlearning delta U")
        table = markdown_table({k.replace("\n", " "): {m: v[m] for m in ("rouge_l_recall", "nll")}
                                for k, v in variants.items()}, False)
        lines += [f"## {r['model']}", "", "K = knowledge delta, U = unlearning delta; forget / retain = the facts of "
                  "the forgotten / kept authors.", "", table, "", f"![{r['model']}]({plot.name})", ""]
    atomic_write_bytes(out / REPORT, "\n".join(lines).encode("utf-8"))
    return out / REPORT


# ---- the recipe -----------------------------------------------------------------------------------------------
def _needs_pull(spec: str) -> bool:
    return spec in ZOO and not is_pulled(spec)


def _pull_quietly(spec: str, log: Callable[[str], None]) -> None:
    """Pull a zoo model in a child process, quietly (its bars would cut through the training bar; its transformers
    loading must not share a process with the training, which is not thread-safe); say when it is done."""
    start = time.time()
    done = subprocess.run([sys.executable, "-m", "crossmodel", "zoo", "pull", spec], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"pulling {spec} failed: {done.stderr.strip().splitlines()[-1] if done.stderr else ''}")
    log(f"  {spec} pulled and converted in the background ({time.time() - start:.0f} s)")


def _trained(metrics: dict[str, Any]) -> str:
    """A delta's final training metrics as one short line (an unlearning run's data set is its forget set)."""
    data = "forget" if "retain_nll" in metrics else "training-set"
    parts = [f"{metrics['step']} steps", f"final loss {metrics['final_loss']:.3f}"]
    parts += [f"{name.replace('data', data).replace('_nll', ' NLL')} {value:.3f}"
              for name, value in sorted(metrics.items()) if name.endswith("_nll")]
    return ", ".join(parts)


def train_deltas(cfg: DemoConfig, template: Any, paths: dict[str, Path], out: Path,
                 log: Callable[[str], None]) -> dict[str, DeltaModel]:
    """The knowledge delta next to the template, then the unlearning delta next to template + knowledge delta."""
    stage = time.time()
    knowledge = train_or_reuse(_train_config(cfg, out / "knowledge", data=str(paths[FACTS]), epochs=cfg.epochs,
                                             lr=cfg.lr, **dict(cfg.knowledge_options)), template)
    log(f"[2/5] knowledge delta trained: {_trained(knowledge.config.metrics)} ({time.time() - stage:.0f} s)")
    stage = time.time()
    stacked = StackedTemplate(template.model, knowledge.model, cfg.alpha, knowledge.config.rule)
    knowing = SimpleNamespace(model=stacked, tokenizer=template.tokenizer, name=f"{template.name}+knowledge")
    unlearn = train_or_reuse(_train_config(cfg, out / "unlearn", data=str(paths[FORGET]), retain=str(paths[RETAIN]),
                                           task=cfg.unlearn_task, epochs=cfg.unlearn_epochs, lr=cfg.unlearn_lr,
                                           **dict(cfg.unlearn_options)), knowing)
    log(f"[3/5] unlearning delta trained: {_trained(unlearn.config.metrics)} ({time.time() - stage:.0f} s)")
    return {"knowledge": knowledge, "unlearn": unlearn}


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo of `cfg` and return its results (also written to `cfg.out`/results.json with report.md)."""
    for spec in (cfg.template, *cfg.models):
        resolve(spec)  # an unknown model name fails now, not after the deltas have trained
    start, out = time.time(), Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    facts = generate_facts(cfg.facts, cfg.seed)
    n_forget = 5 * cfg.forget  # five facts per author, in author order
    paths = write_data(facts, n_forget, out)
    log(f"[1/5] {len(facts)} facts about {cfg.facts} fictitious authors written to {out}")

    template = load_model(cfg.template)
    template.tokenizer.chat_template = PLAIN_CHAT_TEMPLATE  # the training format (kept in crossmodel.json)
    with ThreadPoolExecutor(max_workers=1) as background:  # pull the other models while the deltas train
        pulls = [background.submit(_pull_quietly, spec, log) for spec in cfg.models if _needs_pull(spec)]
        deltas = train_deltas(cfg, template, paths, out, log)
        for done in pulls:
            done.result()

    stage = time.time()
    items = [QAItem(PLAIN_PROMPT.format(question=f["question"]), " " + f["answer"]) for f in facts]
    evals = out / "eval" / _eval_key(cfg, deltas)  # finished evaluations are reused only for the same deltas
    log(f"[4/5] evaluating {len(cfg.models)} models on {len(items)} facts, {min(cfg.parallel, len(cfg.models))} "
        "at a time")
    with ThreadPoolExecutor(max_workers=cfg.parallel) as pool:  # torch ops release the GIL: one core per model
        models = list(pool.map(lambda spec: evaluate_model(spec, deltas, items, n_forget, cfg, evals / slug(spec),
                                                           log), cfg.models))
    log(f"      models evaluated ({time.time() - stage:.0f} s)")
    results = {"config": dataclasses.asdict(cfg), "facts": facts, "forget_records": n_forget, "models": models,
               "wall_s": time.time() - start}
    report = write_report(results, out)
    log(f"[5/5] report written to {report} (whole demo {results['wall_s']:.0f} s)")
    return results
