"""Resumable training state without pickle: the delta's weights and AdamW's state tensors flattened into one
safetensors file, everything else (step, scheduler, RNG state as a list of ints, loss history, config) in JSON.
The checkpoint folder is written to a temporary sibling and renamed into place, so a kill leaves either the old
checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from crossmodel.io import atomic_directory, atomic_write_json
from crossmodel.train.config import config_changes

STATE_TENSORS = "trainer_state.safetensors"
STATE_JSON = "trainer_state.json"
SCHEMA_VERSION = 1


def _flatten(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in optimizer.state_dict()["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value.detach().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, scalars


def _shared_storage_free(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Clone tensors that share memory (tied embeddings), which safetensors refuses to save."""
    seen, result = set(), {}
    for k, v in tensors.items():
        ptr = v.untyped_storage().data_ptr()
        result[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return result


def save_checkpoint(directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, state: dict[str, Any]) -> Path:
    """Write model + optimizer tensors and `state` (JSON-able: step, history, config ...) atomically."""
    directory = Path(directory)
    tensors, scalars = _flatten(model, optimizer)
    groups = optimizer.state_dict()["param_groups"]
    meta = {"schema_version": SCHEMA_VERSION, "optimizer_scalars": scalars, "param_groups": groups,
            "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state().tolist(), **state}
    with atomic_directory(directory) as tmp:
        save_file(_shared_storage_free(tensors), str(tmp / STATE_TENSORS))
        atomic_write_json(tmp / STATE_JSON, meta)
    return directory


def read_state(directory: str | Path) -> dict[str, Any] | None:
    """The JSON state of the checkpoint in `directory` (step, config, identity ...), or None when there is none."""
    directory = Path(directory)
    if not (directory / STATE_JSON).is_file() or not (directory / STATE_TENSORS).is_file():
        return None
    meta = json.loads((directory / STATE_JSON).read_text(encoding="utf-8"))
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{directory / STATE_JSON}: schema_version {meta.get('schema_version')!r} is not "
                         f"{SCHEMA_VERSION}; resume with the crossmodel version that wrote it or pass --overwrite")
    return meta


def check_resumable(directory: str | Path, meta: dict[str, Any], config: dict[str, Any],
                    identity: dict[str, str]) -> None:
    """Raise a ValueError naming every difference between the checkpoint's run and this one: config keys (old →
    new) and identity entries (data files' sha256, template weights) present in both."""
    problems = config_changes(meta.get("config", {}), config)
    old = meta.get("identity", {})
    problems += [f"{k} {old[k][:12]} → {v[:12]}" for k, v in sorted(identity.items()) if k in old and old[k] != v]
    if problems:
        raise ValueError(f"cannot --resume {directory} (step {meta.get('step')}): the run differs in "
                         f"{'; '.join(problems)}; rerun with the checkpoint's settings and data, or pass --overwrite "
                         "to start over")


def load_checkpoint(directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and the torch RNG from `directory`; return the JSON state."""
    directory = Path(directory)
    meta = read_state(directory)
    if meta is None:
        raise FileNotFoundError(f"no checkpoint in {directory}: nothing to resume; run without --resume to "
                                "start a fresh run")
    tensors = load_file(str(directory / STATE_TENSORS))
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or [k for k in missing if k not in _tied_names(model)]:
        raise ValueError(f"{directory}: checkpoint does not fit this delta (missing {missing}, unexpected "
                         f"{unexpected}); resume with the same delta architecture")
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, entry in meta["optimizer_scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(torch.tensor(meta["torch_rng"], dtype=torch.uint8))
    return meta


def _tied_names(model: torch.nn.Module) -> set[str]:
    return set(getattr(model, "_tied_weights_keys", None) or [])
