"""Transplant a delta into another vocabulary once, so it steers a user model without a runtime token map.

In the spirit of Tik-to-Tok (Remy et al., 2023, "Tik-to-Tok: Translating Language Models One Token at a Time"):
each row of the new input embedding and output head (one per token of the target vocabulary) is the weighted
mean of the source rows that token maps to — the pieces of a one-to-many map with their weights, one row for a
normalized / cmc map (exact matches are copied bit for bit). Target tokens the map leaves unmapped get the mean
source row and are flagged in `crossmodel.json`. The transformer blocks are copied unchanged. The map itself is
saved beside the model (`transplant_map/`), so every row's origin can be looked up.

Two layouts: "factored" (default) keeps the source rows and combines them through the map on the fly
(`factored`: the source delta's size and per-step cost); "dense" stores one row per target token.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from crossmodel.models.load import load_tokenizer, logits_width
from crossmodel.steer.delta import DeltaModel, vocab_fingerprint
from crossmodel.steer.factored import (MAP_DIR, mix_rows, factor_vocabulary, logits_rows, mapped_token_map,
                                           row_pieces, vocab_matrices)
from crossmodel.vocab import TokenMap

ROW_UNMAPPED, ROW_EXACT, ROW_COMBINED = 0, 1, 2  # how each target row was made
LAYOUTS = ("factored", "dense")  # factored: source rows + map, combined on the fly; dense: one row per target


def _target(to: Any, rows: int | None) -> tuple[Any, int, str]:
    """(HF tokenizer, logits rows, name) of a LoadedModel, an HF tokenizer, or a model spec string."""
    if isinstance(to, PreTrainedTokenizerBase):
        return to, rows or len(to), str(getattr(to, "name_or_path", "") or "tokenizer")
    if hasattr(to, "model") and hasattr(to, "tokenizer"):  # a LoadedModel
        width = logits_rows(to.model)
        return to.tokenizer, rows or width, str(getattr(to, "name", "") or "model")
    if not isinstance(to, (str, Path)):
        raise ValueError(f"--to must be a model spec (zoo name, HF dir, GGUF file, hub id), a LoadedModel or an HF "
                         f"tokenizer; got {type(to).__name__}")
    tokenizer, _ = load_tokenizer(to)
    return tokenizer, rows or logits_width(to) or len(tokenizer), str(to)


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over the model's named tensors (sorted names, shapes, raw bytes): identifies a delta's weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def transplant_weights(matrix: torch.Tensor, token_map: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Source rows (V_source, ...) -> target rows (token_map.user_rows, ...) and each row's origin (uint8).

    Target row i = sum_k w_k * matrix[source_k] over the map's entries for i (weights normalised to 1); rows
    whose map entry is an exact match are copied; rows without any entry get the mean source row. Origins:
    ROW_EXACT, ROW_COMBINED, ROW_UNMAPPED.
    """
    if matrix.shape[0] != token_map.delta_rows:
        raise ValueError(f"the source matrix has {matrix.shape[0]} rows but the token map was built for "
                         f"delta_rows={token_map.delta_rows}; rebuild the map against this delta's logits width")
    pieces, weights = row_pieces(token_map)
    return mix_rows(matrix.detach().float(), pieces, weights).to(matrix.dtype), _origins(token_map, pieces)


def _origins(token_map: Any, pieces: torch.Tensor) -> torch.Tensor:
    """How each target row is made: ROW_EXACT (one exact-match piece, copied), ROW_UNMAPPED, ROW_COMBINED."""
    exact = (token_map.match == 1) & (token_map.ids >= 0)
    if token_map.indptr is not None:  # an exact one-to-many row holds a single piece
        exact &= (token_map.indptr[1:] - token_map.indptr[:-1]) == 1
    origin = torch.full((token_map.user_rows,), ROW_COMBINED, dtype=torch.uint8)
    origin[exact], origin[pieces[:, 0] == token_map.delta_rows] = ROW_EXACT, ROW_UNMAPPED
    return origin


def _vocab_param_names(model: torch.nn.Module) -> set[str]:
    """Every state-dict name of the input embedding and the output head (tied names included)."""
    vocab_tensors = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    bias = getattr(model.get_output_embeddings(), "bias", None)
    if bias is not None:
        vocab_tensors.add(id(bias))
    return {n for n, p in model.named_parameters(remove_duplicate=False) if id(p) in vocab_tensors}


def _rebuilt(model: torch.nn.Module, rows: int, tokenizer: Any = None) -> torch.nn.Module:
    """A model of the same class and blocks with a `rows`-wide vocabulary; embeddings/head left to fill.
    Its config takes the special-token ids of `tokenizer` (default: keeps the source's), each only if it is
    a row of the new matrices."""
    config = copy.deepcopy(model.config)
    if not hasattr(config, "vocab_size"):
        raise ValueError(f"{type(model).__name__}'s config has no vocab_size; transplant supports decoder-only "
                         "causal LMs such as the Llama-style deltas DeltaModel.create builds")
    config.vocab_size = rows
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        token_id = getattr(tokenizer if tokenizer is not None else config, name, None)
        setattr(config, name, token_id if isinstance(token_id, int) and 0 <= token_id < rows else None)
    dtype = next(model.parameters()).dtype
    new = type(model)(config).to(dtype).eval()
    skip = _vocab_param_names(model)
    kept = {k: v for k, v in model.state_dict().items() if k not in skip}
    missing, unexpected = new.load_state_dict(kept, strict=False)
    if unexpected or set(missing) - _vocab_param_names(new):
        raise RuntimeError(f"copying the transformer blocks failed: missing {sorted(missing)[:5]}, unexpected "
                           f"{sorted(unexpected)[:5]}; the delta architecture is not supported by transplant")
    return new.to(next(model.parameters()).device)


def _check_map(token_map: Any, tokenizer: Any, delta: DeltaModel, rows: int) -> None:
    token_map.verify(user=tokenizer, delta=delta.tokenizer)
    if token_map.user_rows != rows or token_map.delta_rows != delta.rows:
        raise ValueError(f"the token map is for widths target={token_map.user_rows}, source={token_map.delta_rows} "
                         f"but transplant needs target={rows}, source={delta.rows}; rebuild it with `crossmodel map "
                         f"--user TARGET --delta DELTA_DIR --user-rows {rows} --delta-rows {delta.rows}`")


def build_transplant_map(delta: DeltaModel, tokenizer: Any, rows: int, mode: str = "one-to-many",
                         **options: Any) -> Any:
    """The target -> source TokenMap: the identity for the delta's own vocabulary, else `TokenMap.build`."""
    if vocab_fingerprint(tokenizer) == (delta.config.vocab_fingerprint or vocab_fingerprint(delta.tokenizer)):
        return TokenMap.identity(tokenizer, rows=rows, delta_rows=delta.rows)
    return TokenMap.build(tokenizer, delta.tokenizer, mode=mode, user_rows=rows, delta_rows=delta.rows, **options)


def _record(delta: DeltaModel, source_path: Path | None, target_name: str, rows: int, token_map: Any,
            origin: torch.Tensor) -> dict[str, Any]:
    """The provenance written to crossmodel.json: source, target, map and how each row was made."""
    counts = {name: int((origin == code).sum())
              for name, code in (("exact", ROW_EXACT), ("combined", ROW_COMBINED), ("unmapped_mean", ROW_UNMAPPED))}
    record = {"kind": "transplant", "source": str(source_path or ""), "source_rows": delta.rows,
              "source_weights_sha256": weights_digest(delta.model),
              "source_vocab_fingerprint": delta.config.vocab_fingerprint or vocab_fingerprint(delta.tokenizer),
              "target": target_name, "target_rows": rows, "rows": counts,
              "map": {"dir": MAP_DIR, "mode": token_map.mode, "options": token_map.options}}
    if delta.config.provenance:  # a transplant of a transplant keeps the chain
        record["source_provenance"] = delta.config.provenance
    return record


def transplant(delta: DeltaModel | str | Path, to: Any, *, mode: str = "one-to-many", token_map: Any = None,
               rows: int | None = None, layout: str = "factored", **map_options: Any) -> tuple[DeltaModel, Any]:
    """A new DeltaModel in the vocabulary of `to` (model spec, LoadedModel or HF tokenizer), and its map.

    `token_map` (target -> source, e.g. from `crossmodel map --user TARGET --delta DELTA`) replaces building one
    with `mode` and `map_options`. `rows` overrides the target logits width (default: the target model's).
    `layout`: "factored" keeps the source rows and combines them through the map on the fly (the source's size
    and per-step cost); "dense" stores one row per target token (rows that alignment can move one by one).
    Blocks are copied; the source delta is left untouched.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}; choose one of {LAYOUTS}")
    source_path = Path(delta) if isinstance(delta, (str, Path)) else delta.path
    delta = DeltaModel.load(delta) if isinstance(delta, (str, Path)) else delta
    tokenizer, rows, target_name = _target(to, rows)
    if token_map is None:
        token_map = build_transplant_map(delta, tokenizer, rows, mode, **map_options)
    _check_map(token_map, tokenizer, delta, rows)
    embed, head_weight, head_bias = vocab_matrices(delta.model)  # dense, also for a factored source
    pieces, weights = row_pieces(token_map)
    if layout == "dense":
        embed, head_weight, head_bias = (None if m is None else mix_rows(m.detach().float(), pieces, weights)
                                         for m in (embed, head_weight, head_bias))
    # dense: an HF model in the target vocabulary; factored: one in the source vocabulary, mapped on the fly
    model = _rebuilt(delta.model, embed.shape[0], tokenizer if layout == "dense" else None)
    head = model.get_output_embeddings()
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(embed)
        if head.weight is not model.get_input_embeddings().weight:  # untied: the head is transplanted on its own
            head.weight.copy_(head_weight)
        if head_bias is not None:
            head.bias.copy_(head_bias)
    if layout == "factored":
        factor_vocabulary(model, token_map)
    record = _record(delta, source_path, target_name, rows, token_map, _origins(token_map, pieces))
    arch = {**delta.config.architecture, "vocab_rows": rows, "layout": layout,
            "parameters": sum(p.numel() for p in model.parameters())}
    # _check_map verified the map against `tokenizer`, so its user fingerprint is the target's (no re-hash)
    config = dataclasses.replace(delta.config, vocab_fingerprint=token_map.user_fingerprint, architecture=arch)
    return DeltaModel(model=model, tokenizer=tokenizer, config=with_provenance(config, record)), token_map


def with_provenance(config: Any, record: dict[str, Any]) -> Any:
    """`config` (a DeltaConfig) with `record` as its provenance."""
    return dataclasses.replace(config, provenance=record)


def provenance(config: Any) -> dict[str, Any]:
    """The transplant record of a DeltaConfig ({} for a delta that was not transplanted)."""
    return dict(config.provenance or {})


def save_transplant(delta: DeltaModel, token_map: Any, directory: str | Path) -> Path:
    """Save the transplanted delta (HF dir + crossmodel.json) and its map under `directory`/transplant_map
    (a factored delta saves its own map: the map is part of its weights)."""
    directory = delta.save(directory)
    if mapped_token_map(delta.model) is None:
        token_map.save(directory / MAP_DIR)
    return directory
