"""The whole `crossmodel train` run as one function: build (template, data, delta) from a TrainConfig, train,
and save the delta as a DeltaModel directory with its `crossmodel.json` filled in (torchtune's recipe_main:
build, set up, train, clean up).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from crossmodel.io import atomic_write_bytes
from crossmodel.models.batch import pad_id
from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE, chat_template_of
from crossmodel.steer import CONFIG_NAME, DeltaModel
from crossmodel.train.checkpoint import check_resumable, read_state
from crossmodel.train.config import TrainConfig, config_changes
from crossmodel.train.data import encode_examples, load_examples, with_idk_answers
from crossmodel.train.distributed import Processes, launched_processes
from crossmodel.train.facts import generate_facts
from crossmodel.train.loop import CACHE_DIR, CHECKPOINT_DIR, size_text, train
from crossmodel.train.template_cache import template_digest

DELTA_DIR = "delta"
FACT_FILES = ("facts.json", "forget.json", "retain.json")


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _data_summary(cfg: TrainConfig, n_data: int, n_retain: int, tokens: int) -> dict[str, Any]:
    return {"data": str(cfg.data), "retain": cfg.retain, "format": cfg.data_format, "examples": n_data,
            "retain_examples": n_retain, "tokens": tokens}


def _finished(out: Path) -> dict[str, Any] | None:
    """The `crossmodel.json` of the finished run in `out`, or None."""
    path = out / DELTA_DIR / CONFIG_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _check_run_dir(out: Path, cfg: TrainConfig, identity: dict[str, str], *, resume: bool, overwrite: bool,
                   reuse: bool) -> None:
    """Refuse, before anything is loaded or written, a run that would overwrite a finished delta or a newer
    checkpoint, or resume a checkpoint of another configuration or data."""
    if resume and overwrite:
        raise ValueError("pass either --resume (continue the checkpoint) or --overwrite (start over), not both")
    if _finished(out) is not None and not (overwrite or reuse):
        saved = time.strftime("%Y-%m-%d %H:%M", time.localtime((out / DELTA_DIR / CONFIG_NAME).stat().st_mtime))
        raise FileExistsError(f"{out} holds a finished run (delta saved {saved}); choose another --out or pass "
                              "--overwrite")
    state = read_state(out / CHECKPOINT_DIR)
    if resume:
        if state is None:
            raise FileNotFoundError(f"no checkpoint in {out / CHECKPOINT_DIR}: nothing to resume; run without "
                                    "--resume to start a fresh run")
        check_resumable(out / CHECKPOINT_DIR, state, cfg.to_dict(), identity)
    elif state is not None and not overwrite:
        raise FileExistsError(f"{out / CHECKPOINT_DIR} holds an unfinished run (step {state['step']} of "
                              f"{state.get('total', '?')}); pass --resume to continue it or --overwrite to start over")


def _reusable(out: Path, cfg: TrainConfig, identity: dict[str, str]) -> bool:
    """Whether the finished delta in `out` was trained with this config (harmless keys aside) and identity."""
    saved = (_finished(out) or {}).get("data", {})
    return ("train_config" in saved and not config_changes(saved["train_config"], cfg.to_dict())
            and saved.get("identity") == identity)


def run_training(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, reuse: bool = False,
                 template: Any = None, on_step: Callable[[int, float], None] | None = None,
                 log: Callable[[str], None] | None = print, processes: Processes | None = None) -> Path:
    """Train a delta as `cfg` says and return the DeltaModel directory (`cfg.out`/delta).

    A finished run or an unfinished checkpoint in `cfg.out` is never replaced silently: `resume` continues the
    checkpoint (same config and data only), `overwrite` starts over, `reuse` returns the finished delta when it
    was trained with the same config, data and template weights (and, with `overwrite`, retrains otherwise).
    `template` may be an already loaded model (anything with `.model`, `.tokenizer`, `.name`); otherwise
    `cfg.template` is loaded with `crossmodel.models.load_model` in `cfg.dtype`. The finished run keeps no
    checkpoint. `log` receives one-line notes (the resolved plan, cache size).

    Under `accelerate launch` (or torchrun) every process runs this function: `processes` defaults to what the
    launcher started (`distributed.launched_processes`; one process otherwise); the main process loads the template
    first, logs and writes, and every process returns once the delta is saved.
    """
    if processes is None:
        processes = launched_processes(cfg.device, cfg.template_shard)
    log = log if log is not None and processes.is_main else (lambda _: None)
    if not cfg.out:
        raise ValueError("TrainConfig.out is empty: pass --out DIR, the run directory")
    if not cfg.data:
        raise ValueError("TrainConfig.data is empty: pass --data FILE (JSON or JSON-lines)")
    if template is None and not cfg.template:
        raise ValueError("TrainConfig.template is empty: pass --template MODEL (zoo name, HF dir or GGUF)")
    out = Path(cfg.out)
    examples = load_examples(cfg.data, cfg.data_format, cfg.limit)
    if cfg.task == "idk":
        examples = with_idk_answers(examples, cfg.seed)
    retain = load_examples(cfg.retain, cfg.data_format) if cfg.retain else []
    asked, cfg = cfg, cfg.resolved(len(examples))  # `train` resolves `asked` alike and records what was auto
    identity = {"data_sha256": _sha256(cfg.data), **({"retain_sha256": _sha256(cfg.retain)} if cfg.retain else {})}
    _check_run_dir(out, cfg, identity, resume=resume, overwrite=overwrite, reuse=reuse)
    if processes.distributed:  # each process on the device its launcher gave it
        cfg = dataclasses.replace(cfg, device=processes.device)
        asked = dataclasses.replace(asked, device=processes.device)
    if template is None:
        from crossmodel.models import load_model

        with processes.main_first():  # a zoo model is pulled and converted once, by the main process
            template = load_model(cfg.template, device=cfg.device, dtype=cfg.dtype)
    identity["template_weights"] = template_digest(template.model)
    if reuse and _finished(out) is not None:
        if _reusable(out, cfg, identity):
            log(f"reusing the finished run in {out} (same settings, data and template)")
            return out / DELTA_DIR
        if not overwrite:
            raise FileExistsError(f"{out} holds a finished run with other settings, data or template; choose "
                                  "another --out or pass --overwrite")
    tokenizer = template.tokenizer
    chat_template = PLAIN_CHAT_TEMPLATE if cfg.prompt_format == "plain" else chat_template_of(tokenizer)
    data = encode_examples(examples, tokenizer, chat_template, cfg.max_length)
    retain_enc = encode_examples(retain, tokenizer, chat_template, cfg.max_length) if retain else None
    delta = DeltaModel.create(template, layers=cfg.delta_layers, d_model=cfg.delta_d_model, heads=cfg.delta_heads,
                              init_from="template" if cfg.delta_init == "template" else None,
                              zero_start=cfg.delta_zero_start, rule=cfg.rule, alpha=cfg.alpha, seed=cfg.seed)
    delta.model.to(cfg.device)
    if not resume and processes.is_main:  # starting over: no earlier delta or checkpoint survives
        for stale in (out / DELTA_DIR, out / CHECKPOINT_DIR):
            shutil.rmtree(stale, ignore_errors=True)
    processes.barrier()
    result = train(template.model, delta.model, data, asked, out, pad_id=pad_id(tokenizer), retain=retain_enc,
                   resume=resume, identity=identity, on_step=on_step, log=log, processes=processes)
    delta.model.eval()
    tokens = sum(len(e.ids) for e in data)
    delta.config = dataclasses.replace(
        delta.config, task=cfg.task, chat_template=chat_template, metrics=result.metrics,
        data={**_data_summary(cfg, len(data), len(retain), tokens), "train_config": cfg.to_dict(),
              "identity": identity})
    if processes.is_main:
        _save_delta(delta, out, log)
    processes.barrier()  # every process returns a delta that is on disk
    return out / DELTA_DIR


def _save_delta(delta: DeltaModel, out: Path, log: Callable[[str], None]) -> None:
    """Save the finished delta, then drop the stale resume state; say where the kept template cache is."""
    delta.save(out / DELTA_DIR)
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)  # the delta is safely saved: the resume state is stale
    if (out / CACHE_DIR).is_dir():
        size = sum(p.stat().st_size for p in (out / CACHE_DIR).rglob("*") if p.is_file())
        log(f"template cache kept in {out / CACHE_DIR} ({size_text(size)}): a rerun with --overwrite reuses it; "
            "delete it when done")


def write_fact_splits(out: str | Path, n_authors: int = 6, forget_authors: int = 2, seed: int = 0) -> dict[str, Path]:
    """facts.json (all), forget.json (the first `forget_authors` authors), retain.json (the rest) of
    `generate_facts(n_authors, seed)` as JSON lines in `out`. An existing file with other content is refused."""
    if not 1 <= forget_authors < n_authors:
        raise ValueError(f"--forget {forget_authors} must be at least 1 and below --authors {n_authors}: the "
                         "unlearning sets need authors to forget and authors to keep")
    records = generate_facts(n_authors, seed)
    n_forget = 5 * forget_authors  # five facts per author, in author order
    parts = dict(zip(FACT_FILES, (records, records[:n_forget], records[n_forget:])))
    texts = {name: "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
             for name, rows in parts.items()}
    out = Path(out)
    for name, text in texts.items():
        if (out / name).exists() and (out / name).read_bytes() != text:
            raise FileExistsError(f"{out / name} exists with other content; choose another --out or delete it")
    for name, text in texts.items():
        atomic_write_bytes(out / name, text)
    return {name: out / name for name in texts}


def train_or_reuse(cfg: TrainConfig, template: Any = None, log: Callable[[str], None] | None = print) -> DeltaModel:
    """The delta of `cfg`: the finished one in `cfg.out` when it was trained with the same settings, data and
    template weights, else a fresh run that replaces whatever is there."""
    return DeltaModel.load(run_training(cfg, template=template, reuse=True, overwrite=True, log=log))
