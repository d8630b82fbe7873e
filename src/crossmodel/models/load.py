"""Load an LLM and its tokenizer from a zoo name, a local HF directory, a GGUF file or a hub id.

Every loaded tokenizer is fingerprinted with `crossmodel.vocab` (sha256 of its id -> token list and special
tokens), so artefacts built against one tokenizer can check that they meet the same one again. A damaged
directory (truncated weights, a missing or broken tokenizer file) gets one error naming the file and the repair.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from crossmodel.io import check_safetensors, files_fingerprint
from crossmodel.models import gguf as gguf_io
from crossmodel.models.fetch import MANIFEST, pull
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


def slug(spec: str | Path) -> str:
    """A file-name-safe short name of a model spec (zoo name, HF dir, GGUF file or hub id): its last part."""
    return str(spec).rstrip("/").split("/")[-1]


def _from_hub(loader: type, repo_id: str, **kwargs: Any) -> Any:
    try:
        return loader.from_pretrained(repo_id, **kwargs)
    except OSError as err:
        raise OSError(f"could not load {repo_id!r} from the Hugging Face hub ({err.__class__.__name__}: "
                      f"{str(err).splitlines()[0]}). Without a hub, use a zoo model ({', '.join(ZOO)}; "
                      f"`crossmodel zoo pull NAME`), a local HF directory or a .gguf file.") from err


def repair_hint(directory: Path) -> str:
    """What to do about a damaged model directory: re-pull a zoo model, re-save anything else."""
    try:
        name = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return "download the model again or re-save it with save_pretrained"
    return f"re-pull it with `crossmodel zoo pull {name} --force`"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def load_hf_tokenizer(directory: str | Path, fix: str | None = None) -> PreTrainedTokenizerBase:
    """The tokenizer of an HF directory; a missing or damaged tokenizer file is one ValueError naming it."""
    directory = Path(directory)
    fix = fix or repair_hint(directory)
    try:
        return AutoTokenizer.from_pretrained(directory)
    except Exception as err:  # transformers and tokenizers raise many types (even bare Exception) for bad files
        files = [f for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json") if (directory / f).is_file()]
        if not {"tokenizer.json", "tokenizer.model"} & set(files):
            raise ValueError(f"{directory} holds no tokenizer (neither tokenizer.json nor tokenizer.model); "
                             f"{fix}") from err
        raise ValueError(f"the tokenizer files in {directory} ({', '.join(files)}) are damaged or unreadable "
                         f"({_first_line(err)}); {fix}") from err


def load_hf_model(directory: str | Path, *, dtype: torch.dtype = torch.float32, fix: str | None = None
                  ) -> PreTrainedModel:
    """The causal LM of an HF directory; truncated weights or a broken config give one error naming the file.

    Every `*.safetensors` header is checked against its file size first (a few KB read per file).
    """
    directory = Path(directory)
    fix = fix or repair_hint(directory)
    for weights in sorted(directory.glob("*.safetensors")):
        check_safetensors(weights, fix)
    try:
        return AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise OSError(f"could not load the model in {directory} ({_first_line(err)}); {fix}") from err


def _tokenizer_at(source: Source, where: str | Path) -> PreTrainedTokenizerBase:
    if source is Source.GGUF:
        return AutoTokenizer.from_pretrained(Path(where).parent, gguf_file=Path(where).name)
    if source is Source.HUB:
        return _from_hub(AutoTokenizer, str(where))
    return load_hf_tokenizer(where)


def load_tokenizer(spec: str | Path) -> tuple[PreTrainedTokenizerBase, str]:
    """The tokenizer named by `spec` (zoo name | HF dir | GGUF file | hub id) and its vocab fingerprint.

    A zoo model that was not pulled yet is pulled first.
    """
    source, where = resolve(spec)
    if source is Source.ZOO:
        source, where = Source.HF_DIR, pull(str(where), verify=False)
    tokenizer = _tokenizer_at(source, where)
    return tokenizer, load_vocabulary(tokenizer).fingerprint


# The weights' dtypes a user model or frozen template may load in (bfloat16: ~2x faster on CPUs with AVX512-BF16).
MODEL_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def model_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """`dtype` as a torch dtype; a name outside MODEL_DTYPES is one ValueError naming the choices."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in MODEL_DTYPES:
        raise ValueError(f"--dtype {dtype!r}; choose one of {', '.join(MODEL_DTYPES)}")
    return MODEL_DTYPES[dtype]


def load_model(spec: str | Path, *, dtype: str | torch.dtype = torch.float32, device: str | torch.device = "cpu"
               ) -> LoadedModel:
    """Load the causal LM named by `spec` (zoo name | HF dir | GGUF file | hub id) in eval mode, its weights in
    `dtype` (a torch dtype or a name of MODEL_DTYPES).

    Zoo models are pulled (downloaded, verified, converted) on first use and then load from the cache in
    about a second (a reload checks file presence and sizes; `crossmodel zoo pull NAME` re-checks every sha256).
    A GGUF file is dequantized on every load (slow: prefer the zoo's converted directories).
    """
    dtype = model_dtype(dtype)
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
        model = load_hf_model(where, dtype=dtype)
        tokenizer = _tokenizer_at(source, where)
    model = model.to(device).eval()
    path = None if source is Source.HUB else Path(where)
    return LoadedModel(model, tokenizer, load_vocabulary(tokenizer).fingerprint, name, path)


def model_fingerprint(spec: str | Path) -> str:
    """The identity of the model `spec` names (zoo name | HF dir | GGUF file | hub id), without loading it:
    `crossmodel.io.files_fingerprint` of its folder (a zoo name's converted folder, pulled once) or GGUF file —
    weights, config and tokenizer files, sampled — or, for a hub id, `hub:` and the id alone."""
    source, where = resolve(spec)
    if source is Source.ZOO:
        where = pull(str(where), verify=False)
    if source is Source.HUB:
        return f"hub:{where}"
    return files_fingerprint(where)


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
