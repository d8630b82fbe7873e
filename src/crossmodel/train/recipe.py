"""The whole `crossmodel train` run as one function: build (template, data, delta) from a TrainConfig, train,
and save the delta as a DeltaModel directory with its `crossmodel.json` filled in (torchtune's recipe_main:
build, set up, train, clean up).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from crossmodel.steer import DeltaModel
from crossmodel.train.config import TrainConfig
from crossmodel.train.data import encode_examples, load_examples, with_idk_answers
from crossmodel.train.loop import train
from crossmodel.models.prompt import chat_template_of

DELTA_DIR = "delta"


def _data_summary(cfg: TrainConfig, n_data: int, n_retain: int, tokens: int) -> dict[str, Any]:
    return {"data": str(cfg.data), "retain": cfg.retain, "format": cfg.data_format, "examples": n_data,
            "retain_examples": n_retain, "tokens": tokens}


def run_training(cfg: TrainConfig, *, resume: bool = False, template: Any = None,
                 on_step: Callable[[int, float], None] | None = None) -> Path:
    """Train a delta as `cfg` says and return the DeltaModel directory (`cfg.out`/delta).

    `template` may be an already loaded model (anything with `.model`, `.tokenizer`, `.name`); otherwise
    `cfg.template` is loaded with `crossmodel.models.load_model`.
    """
    if not cfg.out:
        raise ValueError("TrainConfig.out is empty: pass --out DIR, the run directory")
    if not cfg.data:
        raise ValueError("TrainConfig.data is empty: pass --data FILE (JSON or JSON-lines)")
    if template is None:
        if not cfg.template:
            raise ValueError("TrainConfig.template is empty: pass --template MODEL (zoo name, HF dir or GGUF)")
        from crossmodel.models import load_model

        template = load_model(cfg.template, device=cfg.device)
    tokenizer, chat_template = template.tokenizer, chat_template_of(template.tokenizer)
    examples = load_examples(cfg.data, cfg.data_format)
    if cfg.task == "idk":
        examples = with_idk_answers(examples, cfg.seed)
    retain = load_examples(cfg.retain, cfg.data_format) if cfg.retain else []
    data = encode_examples(examples, tokenizer, chat_template, cfg.max_length)
    retain_enc = encode_examples(retain, tokenizer, chat_template, cfg.max_length) if retain else None
    delta = DeltaModel.create(template, layers=cfg.delta_layers, d_model=cfg.delta_d_model, heads=cfg.delta_heads,
                              init_from=cfg.delta_init, rule=cfg.rule, alpha=cfg.alpha, seed=cfg.seed)
    delta.model.to(cfg.device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    result = train(template.model, delta.model, data, cfg, cfg.out, pad_id=pad_id, retain=retain_enc,
                   resume=resume, on_step=on_step)
    delta.model.eval()
    tokens = sum(len(e.ids) for e in data)
    delta.config = dataclasses.replace(
        delta.config, task=cfg.task, chat_template=chat_template, metrics=result.metrics,
        data={**_data_summary(cfg, len(data), len(retain), tokens), "train_config": cfg.to_dict()})
    return delta.save(Path(cfg.out) / DELTA_DIR)
