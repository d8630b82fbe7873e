"""The DeltaModel artefact (docs/STEERING.md): a small causal LM in a template's vocabulary plus `crossmodel.json`.

A delta directory is an ordinary Hugging Face model directory (`config.json`, `model.safetensors`, tokenizer
files) with one extra file describing how the delta was made and how to apply it: template name and
fingerprint, vocabulary fingerprint, combination rule, default alpha, the chat template used in training,
the task, a data summary and metrics. `DeltaModel.create` builds a fresh Llama-style delta in a template's
vocabulary, optionally with embeddings initialised from a low-rank projection of the template's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from crossmodel import __version__
from crossmodel.io import atomic_directory, atomic_write_json, read_text
from crossmodel.models.batch import context_length
from crossmodel.models.load import load_hf_model, load_hf_tokenizer, load_model
from crossmodel.steer.combine import COMBINE_RULES
from crossmodel.steer.factored import MAP_DIR, factor_vocabulary, logits_rows, mapped_token_map
from crossmodel.vocab import TokenMap, load_vocabulary

CONFIG_NAME = "crossmodel.json"
SCHEMA_VERSION = 1
MAX_ALPHA = 100.0  # the paper steers with alpha ~ 1; far beyond 10 the delta's logits drown the model's
DEFAULT_MAX_POSITIONS = 2048  # a new delta's context when its template's is unknown (a bare tokenizer)
REPAIR = "the delta directory is damaged: restore it from a copy or train it again (`crossmodel train`)"


def check_alpha(alpha: float, who: str = "alpha") -> float:
    """`alpha` as a float when it is finite and |alpha| <= MAX_ALPHA; ValueError naming `who` otherwise."""
    alpha = float(alpha)
    if not math.isfinite(alpha) or abs(alpha) > MAX_ALPHA:
        raise ValueError(f"{who}={alpha} is out of range: alpha must be a finite number with |alpha| <= "
                         f"{MAX_ALPHA:g} (0 = the user model alone, 1 = as trained; far larger values drown the "
                         "user model's logits and the text degenerates)")
    return alpha


@dataclass(frozen=True)
class DeltaConfig:
    """What `crossmodel.json` holds: where a delta comes from and how to apply it."""

    template: str = field(default="", metadata={"help": "name or path of the template model it was trained with"})
    template_fingerprint: str = field(default="", metadata={"help": "vocabulary fingerprint of the template"})
    vocab_fingerprint: str = field(default="", metadata={"help": "vocabulary fingerprint of the delta tokenizer"})
    rule: str = field(default="basenormalize", metadata={"help": "combination rule; the paper's default"})
    alpha: float = field(default=1.0, metadata={"help": "default strength when the user gives none"})
    chat_template: str | None = field(default=None, metadata={"help": "chat template used in training"})
    task: str | None = field(default=None, metadata={"help": "training task, e.g. 'sft' or 'unlearn'"})
    data: dict[str, Any] = field(default_factory=dict, metadata={"help": "training data summary"})
    metrics: dict[str, Any] = field(default_factory=dict, metadata={"help": "final training/eval metrics"})
    architecture: dict[str, Any] = field(default_factory=dict, metadata={"help": "layers, d_model, heads, ..."})
    provenance: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "where a derived delta came from, e.g. transplant: source delta fingerprint, map, mode"})
    schema_version: int = SCHEMA_VERSION
    crossmodel_version: str = __version__

    def __post_init__(self):
        if self.rule not in COMBINE_RULES:
            raise ValueError(f"DeltaConfig.rule={self.rule!r} is not a combination rule; "
                             f"choose one of {sorted(COMBINE_RULES)}")
        check_alpha(self.alpha, "DeltaConfig.alpha")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = CONFIG_NAME) -> DeltaConfig:
        """Build from parsed JSON: refuses newer schemas, warns about unknown keys by name."""
        version = raw.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(f"{source}: schema_version {version!r} is not supported by crossmodel "
                             f"{__version__} (knows up to {SCHEMA_VERSION}); upgrade crossmodel")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            warnings.warn(f"{source}: ignoring unknown keys {unknown}", stacklevel=3)
        return cls(**{k: v for k, v in raw.items() if k in known})


def vocab_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """The vocabulary fingerprint of an HF tokenizer, as `crossmodel.vocab` computes it."""
    return load_vocabulary(tokenizer).fingerprint


def _resolve_template(vocabulary_of: Any) -> tuple[Any, PreTrainedTokenizerBase, str, int]:
    """(model or None, tokenizer, name, logits width) of a LoadedModel, a tokenizer, or a model spec string."""
    if isinstance(vocabulary_of, (str, Path)):
        vocabulary_of = load_model(str(vocabulary_of))
    if isinstance(vocabulary_of, PreTrainedTokenizerBase):
        name = getattr(vocabulary_of, "name_or_path", "") or ""
        return None, vocabulary_of, str(name), len(vocabulary_of)
    model, tokenizer = getattr(vocabulary_of, "model", None), getattr(vocabulary_of, "tokenizer", None)
    if model is None or tokenizer is None:
        raise ValueError(f"vocabulary_of must be a LoadedModel, an HF tokenizer or a model spec; "
                         f"got {type(vocabulary_of).__name__}")
    rows = model.get_output_embeddings().weight.shape[0]  # the template's logits width
    name = getattr(vocabulary_of, "name", None) or getattr(model.config, "name_or_path", "") or ""
    return model, tokenizer, str(name), rows


def low_rank_embeddings(embeddings: torch.Tensor, rank: int, std: float, seed: int = 0) -> torch.Tensor:
    """Project a (V, D) embedding matrix onto its top `rank` principal directions, rescaled to `std`.

    PCA by randomized SVD (torch.svd_lowrank), so a 262k-row matrix takes seconds. Rows keep their relative
    geometry; the overall scale matches the delta's own initialisation so training starts stably.
    """
    emb = embeddings.detach().float()
    if rank > emb.shape[1]:
        raise ValueError(f"d_model={rank} exceeds the template embedding width {emb.shape[1]}; "
                         f"use a delta d_model (--delta-d-model) <= {emb.shape[1]} or a random start (init_from=None, "
                         "--delta-init random)")
    centred = emb - emb.mean(dim=0, keepdim=True)
    with torch.random.fork_rng(devices=[]):  # svd_lowrank draws a random sketch; seed it, leave global RNG alone
        torch.manual_seed(seed)
        u, s, _ = torch.svd_lowrank(centred, q=min(rank + 8, min(centred.shape)), niter=4)
    projected = u[:, :rank] * s[:rank]  # (V, rank)
    return projected * (std / projected.std().clamp_min(1e-12))


@dataclass
class DeltaModel:
    """A delta: `.model` (HF causal LM), `.tokenizer`, `.config` (DeltaConfig, saved as crossmodel.json)."""

    model: Any
    tokenizer: PreTrainedTokenizerBase
    config: DeltaConfig
    path: Path | None = None  # the directory it was loaded from or last saved to

    @property
    def rows(self) -> int:
        """Width of the delta's logits."""
        return logits_rows(self.model)

    @classmethod
    def create(cls, vocabulary_of: Any, layers: int = 4, d_model: int = 256, heads: int = 4,
               kv_heads: int | None = None, d_ff: int | None = None, max_positions: int | None = None,
               tie_embeddings: bool = True, init_from: Any = None, zero_start: bool = False,
               rule: str = "basenormalize", alpha: float = 1.0, seed: int = 0,
               dtype: torch.dtype = torch.float32) -> DeltaModel:
        """A fresh Llama-style delta in the vocabulary of `vocabulary_of` (LoadedModel, tokenizer or spec).

        The vocabulary size is the template's logits width, so delta and template logits line up row for row.
        `max_positions` (the delta's context) defaults to the template's own, or DEFAULT_MAX_POSITIONS when only
        a tokenizer is given; it is recorded in crossmodel.json (`architecture.max_positions`).
        `init_from` = "template" (or a LoadedModel / HF model) initialises the input embeddings from a
        low-rank PCA projection of that model's input embedding matrix instead of at random.
        `zero_start` sets the final norm's scale to zero, so the fresh delta's logits are exactly zero: training
        starts at the template's own distribution instead of at random logits (the LoRA B = 0 idea).
        """
        for name, value in (("layers", layers), ("d_model", d_model), ("heads", heads)):
            if value < 1:
                raise ValueError(f"{name}={value} must be >= 1")
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be divisible by heads={heads}")
        template, tokenizer, template_name, rows = _resolve_template(vocabulary_of)
        if max_positions is None:
            max_positions = context_length(template) or DEFAULT_MAX_POSITIONS
        if max_positions < 1:
            raise ValueError(f"max_positions={max_positions} must be >= 1")
        hf_config = LlamaConfig(
            vocab_size=rows, hidden_size=d_model, num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=kv_heads or heads, intermediate_size=d_ff or 4 * d_model,
            max_position_embeddings=max_positions, tie_word_embeddings=tie_embeddings,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = LlamaForCausalLM(hf_config).to(dtype).eval()
        if init_from is not None:
            source = template if isinstance(init_from, str) and init_from == "template" else init_from
            if source is None:
                raise ValueError("init_from='template' needs vocabulary_of to be a model (LoadedModel or spec), "
                                 "not a bare tokenizer")
            source = getattr(source, "model", source)
            weight = source.get_input_embeddings().weight  # (V_template_in, D_template)
            projected = low_rank_embeddings(weight, d_model, hf_config.initializer_range, seed)
            n = min(rows, projected.shape[0])
            with torch.no_grad():
                model.get_input_embeddings().weight[:n] = projected[:n].to(dtype)
        if zero_start:
            with torch.no_grad():
                model.model.norm.weight.zero_()
        fingerprint = vocab_fingerprint(tokenizer)
        arch = {"type": "llama", "layers": layers, "d_model": d_model, "heads": heads,
                "kv_heads": kv_heads or heads, "d_ff": d_ff or 4 * d_model, "max_positions": max_positions,
                "vocab_rows": rows, "parameters": sum(p.numel() for p in model.parameters()),
                "init_from": None if init_from is None else ("template" if isinstance(init_from, str) else
                                                             "model"), "zero_start": zero_start, "seed": seed}
        config = DeltaConfig(template=template_name, template_fingerprint=fingerprint, vocab_fingerprint=fingerprint,
                             rule=rule, alpha=alpha, chat_template=getattr(tokenizer, "chat_template", None),
                             architecture=arch)
        return cls(model=model, tokenizer=tokenizer, config=config)

    def save(self, directory: str | Path) -> Path:
        """Write the HF model dir (safetensors), tokenizer files and crossmodel.json atomically; return the dir.
        A delta in the factored layout (a transplant) also writes its token map, to `transplant_map/`."""
        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
            if (token_map := mapped_token_map(self.model)) is not None:
                token_map.save(tmp / MAP_DIR)
            atomic_write_json(tmp / CONFIG_NAME, self.config.to_dict())
        self.path = directory
        return directory

    @classmethod
    def load(cls, directory: str | Path, *, dtype: torch.dtype = torch.float32, device: str = "cpu",
             check: bool = True) -> DeltaModel:
        """Load a delta directory; checks the schema and that the tokenizer matches the recorded fingerprint."""
        directory = Path(directory)
        path = directory / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {directory} is not a crossmodel delta directory "
                                    "(create one with `crossmodel train` or DeltaModel.create(...).save(dir))")
        try:
            raw = json.loads(read_text(path))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); {REPAIR}") from None
        config = DeltaConfig.from_dict(raw, source=str(path))
        model = load_hf_model(directory, dtype=dtype, fix=REPAIR).to(device).eval()
        tokenizer = load_hf_tokenizer(directory, fix=REPAIR)
        if config.architecture.get("layout") == "factored":
            model = _factored(model, directory, config.vocab_fingerprint)
        if check and config.vocab_fingerprint:
            found = vocab_fingerprint(tokenizer)
            if found != config.vocab_fingerprint:
                raise ValueError(f"{directory}: tokenizer fingerprint {found[:12]} differs from the one recorded in "
                                 f"{CONFIG_NAME} ({config.vocab_fingerprint[:12]}); the tokenizer files were "
                                 "replaced — restore them or re-save the delta")
        return cls(model=model, tokenizer=tokenizer, config=config, path=directory)


def trained_chat_template(directory: str | Path) -> str | None:
    """The chat template a saved delta was trained with (its crossmodel.json), read without loading the model."""
    try:
        return json.loads(read_text(Path(directory) / CONFIG_NAME)).get("chat_template")
    except (OSError, ValueError, AttributeError):
        return None  # not a delta directory: DeltaModel.load says what is wrong


def _factored(model: Any, directory: Path, fingerprint: str) -> Any:
    """The loaded source-vocabulary model of a factored transplant, put back in its target vocabulary."""
    if not (directory / MAP_DIR).is_dir():
        raise FileNotFoundError(f"{directory / MAP_DIR} not found: {directory} holds a transplanted delta in the "
                                f"factored layout, whose rows need that token map; restore the directory or "
                                "transplant the source delta again")
    token_map = TokenMap.load(directory / MAP_DIR)
    if fingerprint and token_map.user_fingerprint != fingerprint:
        raise ValueError(f"{directory / MAP_DIR} maps from vocabulary {token_map.user_fingerprint[:12]}, not the "
                         f"delta's ({fingerprint[:12]}, {CONFIG_NAME}); the map was replaced — transplant again")
    return factor_vocabulary(model, token_map)
