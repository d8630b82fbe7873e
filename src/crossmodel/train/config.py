"""`TrainConfig`: every setting of a training run, validated on construction, readable from YAML or JSON.

The same keys serve the command line (`crossmodel train --epochs 3 ...`) and a config file
(`crossmodel train --config run.yaml`); the resolved config is stored in the run's checkpoint and artefact.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crossmodel.steer.combine import COMBINE_RULES
from crossmodel.train.data import FORMATS
from crossmodel.train.losses import LOSSES, NEEDS_RETAIN, NPO_BETA
from crossmodel.train.template_cache import DTYPES


def _help(text: str, default: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one `crossmodel train` run (defaults are this project's, tuned on SmolLM2 + TOFU-style data)."""

    template: str = _help("template model: zoo name, HF dir, GGUF file or hub id", "")
    data: str = _help("training data (the forget set for unlearning): JSON or JSON-lines", "")
    out: str = _help("run directory: checkpoint/, template_cache/, loss_curve.png, delta/ (the artefact)", "")
    retain: str | None = _help("retain set for grad_diff / kl (optional for idk / npo)", None)
    data_format: str = _help(f"record format of data and retain: {', '.join(FORMATS)}", "tofu")
    task: str = _help(f"loss: {', '.join(LOSSES)}", "sft")
    rule: str = _help("combination rule (DESIGN.md §1); basenormalize is the paper's default", "basenormalize")
    alpha: float = _help("delta strength in the combination", 1.0)
    delta_layers: int = _help("delta transformer layers", 4)
    delta_d_model: int = _help("delta hidden width", 256)
    delta_heads: int = _help("delta attention heads", 4)
    delta_init: str | None = _help("'template' = embeddings from a PCA of the template's; None = random", None)
    epochs: int = _help("passes over the training data", 3)
    batch_size: int = _help("examples per micro-batch", 4)
    grad_accum: int = _help("micro-batches per optimizer step", 1)
    lr: float = _help("AdamW peak learning rate", 5e-4)
    weight_decay: float = _help("AdamW weight decay", 0.0)
    warmup_ratio: float = _help("fraction of steps of linear warm-up before the cosine decay", 0.1)
    max_grad_norm: float = _help("gradient clipping norm (0 = off)", 1.0)
    max_length: int = _help("tokens per example (prompt + answer); longer answers are cut", 512)
    npo_beta: float = _help("NPO inverse temperature (Zhang et al. 2024, TOFU runs: 0.1)", NPO_BETA)
    chunk_size: int = _help("loss positions per chunk of the memory-safe loss", 256)
    cache: bool = _help("cache the template's log-probs on disk and reuse them every epoch", True)
    cache_dtype: str = _help(f"cache storage dtype: {', '.join(DTYPES)}", "float16")
    eval_every: int = _help("optimizer steps between evaluations (0 = at the end only)", 0)
    save_every: int = _help("optimizer steps between checkpoints (0 = none until the end)", 50)
    seed: int = _help("seed of the delta's initialisation, data order and dropout", 0)
    device: str = _help("torch device", "cpu")
    progress: bool = _help("show a progress bar", True)

    def __post_init__(self):
        _choice("task", self.task, LOSSES)
        _choice("rule", self.rule, COMBINE_RULES)
        _choice("data_format", self.data_format, FORMATS)
        _choice("cache_dtype", self.cache_dtype, DTYPES)
        if self.delta_init not in (None, "template"):
            raise ValueError(f"TrainConfig.delta_init={self.delta_init!r}: use 'template' or None")
        for name in ("delta_layers", "delta_d_model", "delta_heads", "epochs", "batch_size", "grad_accum",
                     "max_length", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must be >= 1")
        for name in ("eval_every", "save_every", "weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must be >= 0")
        if not self.lr > 0 or not self.npo_beta > 0:
            raise ValueError(f"TrainConfig.lr={self.lr} and npo_beta={self.npo_beta} must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"TrainConfig.warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if self.task in NEEDS_RETAIN and not self.retain:
            raise ValueError(f"task {self.task!r} needs a retain set: pass --retain FILE (or `retain:` in the config)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """A config read from YAML or JSON, then `overrides` (e.g. command-line flags) applied on top."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        text = path.read_text(encoding="utf-8")
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


def _choice(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"TrainConfig.{name}={value!r}; choose one of {sorted(allowed)}")
