"""`TrainConfig`: every setting of a training run, validated on construction, readable from YAML or JSON.

The same keys serve the command line (`crossmodel train --epochs 3 ...`, whose help texts and defaults are read from
the fields below) and a config file (`crossmodel train --config run.yaml`); the resolved config (auto values
filled in) is stored in the run's checkpoint, `train_log.json` and the delta's `crossmodel.json`.
This module imports no torch, so that the command line can read the fields without paying for it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossmodel.io import read_text

# Names of the registries, spelt out for the help texts (the registries themselves import torch);
# tests/train/test_config.py pins them against COMBINE_RULES, FORMATS, LOSSES and template_cache.DTYPES.
RULE_NAMES, FORMAT_NAMES = ("basenormalize", "normalize", "add"), ("tofu", "alpaca", "chat")
RULE_CHOICES = (*RULE_NAMES, "base-normalize")  # COMBINE_RULES also accepts the paper code's spelling
TASK_NAMES = ("sft", "grad_ascent", "grad_diff", "kl", "idk", "npo", "simnpo", "undial")
RETAIN_LOSS_NAMES = ("ce", "kl")
CACHE_DTYPE_NAMES, TEMPLATE_DTYPE_NAMES = ("float16", "bfloat16", "float32"), ("float32", "bfloat16")
TEMPLATE_SHARD_NAMES = ("auto", "replicate", "fsdp", "zero3")  # distributed.SHARDINGS
DELTA_INIT_NAMES = ("random", "template")
PROMPT_FORMAT_NAMES = ("plain", "own")  # models.prompt: PLAIN_CHAT_TEMPLATE | the template's chat template
AUTO_KEYS = ("epochs", "save_every", "delta_init", "delta_zero_start", "delta_lm_weight")  # unset = `resolved`
# What a resolved config saved before the delta's start became auto (2026-12-02) meant by None or a missing key
RESOLVED_BEFORE_AUTO = {"delta_init": "random", "delta_zero_start": False}
# What a config saved before a key existed meant by its absence (the prompt format: the template's own until 2026-12-08)
MISSING_BEFORE = {"prompt_format": "own"}
LM_TASKS = ("sft", "idk")  # tasks whose forget-side targets are fitted by CE: auto delta_lm_weight 1 there
AUTO_SAVE_MIN = 5  # auto checkpoints: a tenth of the run, no more often than every 5 steps (~200 MB each
# for the default delta at SmolLM2's vocabulary)
UNLEARN_EPOCHS = 5  # TOFU (Maini et al. 2024, §4): every unlearning method runs 5 epochs
# Keys that change neither the numbers a run computes nor which run it is: a resumed run may change them.
HARMLESS_KEYS = frozenset({"progress", "save_every", "eval_every", "device", "out", "cache", "cache_dtype",
                           "cache_budget_gb", "template_shard"})


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one `crossmodel train` run (defaults are this project's, measured on SmolLM2 + fictitious facts,
    docs/TRAINING.md)."""

    template: str = _help("template model: zoo name, HF dir, GGUF file or hub id", "")
    data: str = _help("training data (the forget set for unlearning): JSON or JSON-lines", "")
    out: str = _help("run directory: checkpoint/, template_cache/, train_log.json, loss_curve.png, delta/", "")
    retain: str | None = _help("retain set for grad_diff / kl (optional for idk / npo)", None)
    data_format: str = _help(f"record format of data and retain: {' | '.join(FORMAT_NAMES)}", "tofu")
    prompt_format: str = _help("the text the template and the delta read: plain = 'Question: …\\nAnswer: …' (the "
                               "BOS where the tokenizer wants one), a format every model reads — base or instruct, "
                               "any family — so steering other models stays fluent (docs/TRAINING.md) | own = the "
                               "template's chat template (plain when it has none)", "plain")
    limit: int | None = _help("train on the first N records of data only (unset = all)", None)
    task: str = _help(f"loss: {' | '.join(TASK_NAMES)}", "sft")
    rule: str = _help(f"combination rule (docs/STEERING.md): {' | '.join(RULE_NAMES)}", "basenormalize")
    alpha: float = _help("delta strength in the combination", 1.0)
    delta_layers: int = _help("delta transformer layers", 4)
    delta_d_model: int = _help("delta hidden width", 256)
    delta_heads: int = _help("delta attention heads", 4)
    delta_init: str | None = _help("the delta's token embeddings at the start: random | template (a PCA of the "
                                   "template's); unset = auto: template for sft on alpaca instruction data, else "
                                   "random", None)
    delta_zero_start: bool | None = _help("start the delta at exactly zero logits (its final norm scale at zero), so "
                                          "training starts from the template's own distribution; unset = auto: on "
                                          "for sft on alpaca instruction data (it generalises there), off elsewhere "
                                          "(it learns a few facts too slowly to memorise them)", None)
    train_embeddings: bool = _help("train the delta's token embeddings (input and output); --no-train-embeddings "
                                   "keeps them at their initial value, so the delta changes logits only through its "
                                   "layers, in that embedding's token geometry (with --delta-init template: the "
                                   "template's)", True)
    epochs: int | None = _help(f"passes over the data; unset = auto: sft trains whole epochs until at least "
                               f"min_steps optimizer steps, unlearning {UNLEARN_EPOCHS} epochs (TOFU)", None)
    min_steps: int = _help("optimizer steps that auto epochs reach at least (sft)", 150)
    batch_size: int = _help("examples per micro-batch", 4)
    grad_accum: int = _help("micro-batches per optimizer step", 1)
    lr: float = _help("AdamW peak learning rate", 2e-3)
    weight_decay: float = _help("AdamW weight decay", 0.0)
    warmup_ratio: float = _help("fraction of steps of linear warm-up before the cosine decay", 0.1)
    max_grad_norm: float = _help("gradient clipping norm (0 = off)", 1.0)
    max_length: int = _help("tokens per example (prompt + answer); longer answers are cut", 512)
    npo_beta: float = _help("NPO inverse temperature (Zhang et al. 2024, TOFU runs: 0.1)", 0.1)
    simnpo_beta: float = _help("SimNPO inverse temperature (Fan et al. 2024, TOFU: 2.5)", 2.5)
    simnpo_gamma: float = _help("SimNPO reward margin γ (Fan et al. 2024, TOFU: 0)", 0.0)
    undial_gamma: float = _help("UNDIAL: how far the target token's logit is lowered in the self-distillation "
                                "teacher", 10.0)
    retain_loss: str = _help("retain term of idk / npo / simnpo / undial: ce (on the retain answers) | kl (to the "
                             "frozen model)", "ce")
    retain_weight: float = _help("weight of the retain term against the forget term (grad_diff, kl, idk, npo, "
                                 "simnpo, undial)", 1.0)
    sft_kl_weight: float = _help("sft: weight of KL(template ‖ combined) on the training answers, added to the CE; "
                                 "keeps the combined model near the template wherever the data does not pull it "
                                 "(against memorising a small instruction set)", 0.0)
    delta_lm_weight: float | None = _help("weight of the delta's own next-token CE (its logits alone, without the "
                                          "template), added wherever the loss fits targets by CE (sft data, idk "
                                          "refusals, CE retain terms); > 0 makes the delta a language model by "
                                          "itself, which keeps steering across vocabularies from looping; unset = "
                                          "auto: 1 for sft and idk, except when the delta starts at zero (alpaca "
                                          "instruction data), 0 elsewhere", None)
    chunk_size: int = _help("loss positions per chunk of the memory-safe loss", 256)
    dtype: str = _help(f"the frozen template's dtype: {' | '.join(TEMPLATE_DTYPE_NAMES)} (the delta stays "
                       "float32)", "float32")
    template_shard: str = _help(f"under accelerate launch: {' | '.join(TEMPLATE_SHARD_NAMES)} — how the frozen "
                                "template is placed on the processes (auto: FSDP / DeepSpeed ZeRO-3 shard it when "
                                "accelerate is configured for them, else replicated; docs/SCALING.md)", "auto")
    cache: bool = _help("cache the template's log-probs on disk and reuse them every epoch", True)
    cache_dtype: str = _help(f"cache storage dtype: {' | '.join(CACHE_DTYPE_NAMES)}", "float16")
    cache_budget_gb: float = _help("largest template cache to write (GiB); above it the run recomputes the "
                                   "template every step instead, and says so", 2.0)
    eval_every: int = _help("optimizer steps between evaluations (0 = at the end only)", 0)
    save_every: int | None = _help("optimizer steps between checkpoints; unset = auto (a tenth of the run, at "
                                   "least 5); 0 = none (the run cannot be resumed)", None)
    seed: int = _help("seed of the delta's initialisation, data order and dropout", 0)
    device: str = _help("torch device", "cpu")
    progress: bool = _help("show a progress bar", True)

    def __post_init__(self):
        _choice("task", self.task, TASK_NAMES)
        _choice("rule", self.rule, RULE_CHOICES)
        _choice("data_format", self.data_format, FORMAT_NAMES)
        _choice("cache_dtype", self.cache_dtype, CACHE_DTYPE_NAMES)
        _choice("dtype", self.dtype, TEMPLATE_DTYPE_NAMES)
        _choice("template_shard", self.template_shard, TEMPLATE_SHARD_NAMES)
        _choice("retain_loss", self.retain_loss, RETAIN_LOSS_NAMES)
        _choice("prompt_format", self.prompt_format, PROMPT_FORMAT_NAMES)
        if self.delta_init is not None:
            _choice("delta_init", self.delta_init, DELTA_INIT_NAMES)
        for name in ("delta_layers", "delta_d_model", "delta_heads", "epochs", "min_steps", "batch_size",
                     "grad_accum", "max_length", "chunk_size", "limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must be >= 1")
        for name in ("eval_every", "save_every", "weight_decay", "max_grad_norm", "cache_budget_gb", "retain_weight",
                     "sft_kl_weight", "delta_lm_weight"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must be >= 0")
        for name in ("lr", "npo_beta", "simnpo_beta"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must be > 0")
        for name in ("simnpo_gamma", "undial_gamma"):
            if not 0 <= getattr(self, name) < float("inf"):
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must be a finite number >= 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"TrainConfig.warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if self.task in ("grad_diff", "kl") and not self.retain:  # losses.NEEDS_RETAIN
            raise ValueError(f"task {self.task!r} needs a retain set: pass --retain FILE (or `retain:` in the config)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def steps_per_epoch(self, n_examples: int) -> int:
        """Optimizer steps in one pass over `n_examples` (the last micro-batch and step may be short)."""
        return math.ceil(math.ceil(n_examples / self.batch_size) / self.grad_accum)

    def resolved(self, n_examples: int) -> "TrainConfig":
        """This config with the AUTO_KEYS filled in for a data set of `n_examples`: epochs, save_every, the delta's
        start (template geometry and zero logits for sft on alpaca instruction data: docs/TRAINING.md) and the weight
        of its own language-model loss."""
        per_epoch = self.steps_per_epoch(n_examples)
        epochs = self.epochs
        if epochs is None:
            epochs = max(1, math.ceil(self.min_steps / per_epoch)) if self.task == "sft" else UNLEARN_EPOCHS
        save_every = self.save_every if self.save_every is not None else max(AUTO_SAVE_MIN, epochs * per_epoch // 10)
        instruct = self.task == "sft" and self.data_format == "alpaca"
        delta_init = self.delta_init or ("template" if instruct else "random")
        zero_start = instruct if self.delta_zero_start is None else self.delta_zero_start
        lm_weight = self.delta_lm_weight
        if lm_weight is None:  # a delta that starts at zero is meant to start from the template's distribution
            lm_weight = 1.0 if self.task in LM_TASKS and not zero_start else 0.0
        return dataclasses.replace(self, epochs=epochs, save_every=save_every, delta_init=delta_init,
                                   delta_zero_start=zero_start, delta_lm_weight=lm_weight)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """A config read from YAML or JSON, then `overrides` (e.g. command-line flags) applied on top."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        text = read_text(path, "config file")
        if path.suffix == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping of TrainConfig keys, got {type(raw).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; valid keys are {sorted(known)}")
        return cls(**{**raw, **overrides})


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`key old → new` for every key of two resolved configs that differs, harmless keys excepted."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}

    def value(config: dict[str, Any], key: str) -> Any:
        found = config[key] if key in config else MISSING_BEFORE.get(key, defaults.get(key))
        return RESOLVED_BEFORE_AUTO.get(key) if found is None else found

    return [f"{k} {value(old, k)!r} → {value(new, k)!r}" for k in sorted({*old, *new})
            if k not in HARMLESS_KEYS and value(old, k) != value(new, k)]


def _choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"TrainConfig.{name}={value!r}; choose one of {sorted(allowed)}")
