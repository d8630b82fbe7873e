"""Load an LLM and its tokenizer from a zoo name, a local HF directory, a GGUF file or a hub id.

Every loaded tokenizer is fingerprinted with `crossmodel.vocab` (sha256 of its id -> token list and special
tokens), so artefacts built against one tokenizer can check that they meet the same one again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from crossmodel.models import gguf as gguf_io
from crossmodel.models.fetch import pull
from crossmodel.models.zoo import ZOO
from crossmodel.vocab import load_vocabulary

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # "org/name", as the hub spells repository ids


class Source(Enum):
    ZOO = "zoo"
    HF_DIR = "hf-dir"
    GGUF = "gguf"
    HUB = "hub"


@dataclass
class LoadedModel:
    """A causal LM in eval mode, its tokenizer, the tokenizer's vocab fingerprint, and where it came from."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    fingerprint: str
    name: str
    path: Path | None  # the local HF directory or GGUF file; None for a hub id


def resolve(spec: str | Path) -> tuple[Source, str | Path]:
    """Decide what `spec` names: (Source.ZOO, name), (HF_DIR, dir), (GGUF, file) or (HUB, repo id)."""
    text = str(spec)
    if text in ZOO:
        return Source.ZOO, text
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return Source.HF_DIR, path
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return Source.GGUF, ggufs[0]
        raise ValueError(f"{path} is neither an HF model directory (no config.json) nor a folder with exactly "
                         f"one .gguf file ({len(ggufs)} found); pass the .gguf file itself or a zoo name")
    if path.is_file():
        if path.suffix == ".gguf":
            return Source.GGUF, path
        raise ValueError(f"{path} is a file but not a .gguf; pass an HF model directory, a .gguf file, "
                         f"a zoo name ({', '.join(ZOO)}) or a hub id")
    if text.startswith(("/", ".", "~")) or text.endswith(".gguf"):
        raise FileNotFoundError(f"model path not found: {path.absolute()}")
    if _HUB_ID.match(text):
        return Source.HUB, text
    raise ValueError(f"unknown model {text!r}: not a zoo name (known: {', '.join(ZOO)}), not an existing path, "
                     f"and not a hub id of the form org/name")


def _from_hub(loader: type, repo_id: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(repo_id, **kwargs)
    except OSError as err:
        raise OSError(f"could not load {repo_id!r} from the Hugging Face hub ({err.__class__.__name__}: "
                      f"{str(err).splitlines()[0]}). Without a hub, use a zoo model ({', '.join(ZOO)}; "
                      f"`crossmodel zoo pull NAME`), a local HF directory or a .gguf file.") from err


def _tokenizer_at(source: Source, where: str | Path) -> PreTrainedTokenizerBase:
    if source is Source.GGUF:
        return AutoTokenizer.from_pretrained(Path(where).parent, gguf_file=Path(where).name)
    if source is Source.HUB:
        return _from_hub(AutoTokenizer, str(where))
    return AutoTokenizer.from_pretrained(where)


def load_tokenizer(spec: str | Path) -> tuple[PreTrainedTokenizerBase, str]:
    """The tokenizer named by `spec` (zoo name | HF dir | GGUF file | hub id) and its vocab fingerprint.

    A zoo model that was not pulled yet is pulled first.
    """
    source, where = resolve(spec)
    if source is Source.ZOO:
        source, where = Source.HF_DIR, pull(str(where), verify=False)
    tokenizer = _tokenizer_at(source, where)
    return tokenizer, load_vocabulary(tokenizer).fingerprint


def load_model(spec: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
               ) -> LoadedModel:
    """Load the causal LM named by `spec` (zoo name | HF dir | GGUF file | hub id) in eval mode.

    Zoo models are pulled (downloaded, verified, converted) on first use and then load from the cache in
    about a second (a reload checks file presence and sizes; `crossmodel zoo pull NAME` re-checks every sha256).
    A GGUF file is dequantized on every load (slow: prefer the zoo's converted directories).
    """
    source, where = resolve(spec)
    name = str(spec)
    if source is Source.ZOO:
        source, where = Source.HF_DIR, pull(str(where), verify=False)
    if source is Source.GGUF:
        model, tokenizer = gguf_io.load_gguf(where, dtype=dtype)
    elif source is Source.HUB:
        model = _from_hub(AutoModelForCausalLM, str(where), dtype=dtype)
        tokenizer = _tokenizer_at(source, where)
    else:
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype)
        tokenizer = _tokenizer_at(source, where)
    model = model.to(device).eval()
    path = None if source is Source.HUB else Path(where)
    return LoadedModel(model, tokenizer, load_vocabulary(tokenizer).fingerprint, name, path)


def logits_width(spec: str | Path) -> int | None:
    """The logits width (output rows) of the model named by `spec`, read from its config without loading the
    weights; None for a GGUF file (whose rows equal its tokenizer)."""
    from transformers import AutoConfig

    source, where = resolve(spec)
    if source is Source.ZOO:
        source, where = Source.HF_DIR, pull(str(where), verify=False)
    if source is Source.GGUF:
        return None
    config = AutoConfig.from_pretrained(where) if source is Source.HF_DIR else _from_hub(AutoConfig, str(where))
    return int(config.get_text_config().vocab_size)


def tokenizer_source(spec: str) -> tuple[str, int | None]:
    """For `crossmodel map`: what `crossmodel.vocab` should read for `spec`, and the model's logits width.

    A zoo name becomes its (pulled) HF directory; an HF model directory stays as it is; both come with the
    model's logits width (Gemma-3-270m: 262,144 rows for a 262,145-token tokenizer). Anything else (a tokenizer
    file, a GGUF file, a known tokenizer name) is passed through with no width.
    """
    path = Path(spec).expanduser()
    if spec in ZOO and not path.exists():
        directory = pull(spec, verify=False)
        return str(directory), logits_width(directory)
    if path.is_dir() and (path / "config.json").is_file():
        return spec, logits_width(path)
    return spec, None
