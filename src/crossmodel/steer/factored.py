"""A vocabulary carried by a map instead of a matrix: the *factored* layout of a transplanted delta.

A transplanted delta's target row i is a weighted mean of source rows, `sum_k w_ik * source[p_ik]` (weights
summing to 1; a target token the map leaves unmapped takes the mean source row). Instead of storing that
(V_target, d_model) matrix, the factored layout keeps the source table and the (V_target, K) pieces and weights:

- input embedding of token i: the same weighted sum, of the K source rows it looks up;
- output head: the head is linear, so `h . (sum_k w_ik W[p_ik]) = sum_k w_ik (h . W[p_ik])`: one source-width
  matmul, then a gather of K source logits per target row. The mean row's logit is the mean of the logits.

Per step this costs what runtime mapping costs (the source head and a gather), with none of its tokenization
sync, and the artefact keeps the source delta's size. The map lives beside the weights (`MAP_DIR`).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MAP_DIR = "transplant_map"  # the target -> source TokenMap, saved inside a transplanted delta's directory
_CHUNK = 1 << 14  # target rows per chunk when a dense matrix is built: bounds the (chunk, K, d_model) temporary


def row_pieces(token_map: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(pieces, weights), each (user_rows, K): the source rows every target row combines and their weights,
    normalised to sum 1 per row. Padding repeats a row's first piece with weight 0; a row without any source
    row gets the single piece `delta_rows`, which stands for the mean source row."""
    if token_map.indptr is None:  # one source row per target row
        pieces, weights = token_map.ids.long()[:, None].clone(), (token_map.ids >= 0).double()[:, None]
    else:
        pieces, weights = token_map.padded_pieces()
        pieces, weights = pieces.clone(), weights.double()
    totals = weights.sum(1, keepdim=True)
    weights = (weights / totals.clamp_min(1e-30)).float()
    unmapped = totals[:, 0] == 0
    pieces[unmapped], weights[unmapped, 0] = token_map.delta_rows, 1.0
    return pieces, weights


def mix_rows(source: torch.Tensor, pieces: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Target rows from source rows (V_source, ...): row i = sum_k weights[i, k] * source[pieces[i, k]], with
    piece V_source standing for the mean source row. A single piece of weight 1 is copied bit for bit."""
    table = torch.cat([source, source.mean(0, keepdim=True)])  # (V_source + 1, ...)
    parts = []
    for p, w in zip(pieces.split(_CHUNK), weights.split(_CHUNK)):
        picked = table[p]  # (chunk, K, ...)
        parts.append((picked * w.to(table.dtype).reshape(*w.shape, *([1] * (source.dim() - 1)))).sum(1))
    return torch.cat(parts) if parts else table[:0]


def _mixing_matrix(pieces: torch.Tensor, weights: torch.Tensor, columns: int) -> torch.Tensor:
    """The pieces and weights as a sparse CSR (V_target, columns) matrix: one sparse matmul maps a batch of
    source logits to target logits (several times faster than a padded gather once a batch holds a few rows)."""
    keep = weights != 0
    rows = torch.arange(pieces.shape[0])[:, None].expand_as(pieces)[keep]
    coo = torch.sparse_coo_tensor(torch.stack([rows, pieces[keep]]), weights[keep], (pieces.shape[0], columns),
                                  check_invariants=True)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": matmul and its backward are all we use
        warnings.simplefilter("ignore", UserWarning)
        return coo.coalesce().to_sparse_csr()


class MappedEmbedding(nn.Module):
    """Input embedding in the target vocabulary computed from the source table (`weight`, a shared Parameter)."""

    def __init__(self, source: nn.Embedding, pieces: torch.Tensor, weights: torch.Tensor, token_map: Any):
        super().__init__()
        self.weight = source.weight  # (V_source, d_model); the state-dict name and shape stay the source's
        self.register_buffer("pieces", pieces.to(source.weight.device), persistent=False)
        self.register_buffer("piece_weights", weights.to(source.weight.device), persistent=False)
        self.num_embeddings, self.embedding_dim = pieces.shape[0], source.weight.shape[1]
        self.token_map = token_map

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        pieces = self.pieces[input_ids]  # (..., K)
        mean = pieces == self.weight.shape[0]
        rows = F.embedding(pieces.masked_fill(mean, 0), self.weight)  # (..., K, d_model)
        if mean.any():
            rows = torch.where(mean[..., None], self.weight.mean(0), rows)
        return (rows * self.piece_weights[input_ids].to(rows.dtype)[..., None]).sum(-2)

    def dense(self) -> torch.Tensor:
        """The (V_target, d_model) matrix this module stands for."""
        return mix_rows(self.weight.detach(), self.pieces, self.piece_weights)


class MappedHead(nn.Module):
    """Output head in the target vocabulary: the source head's logits, gathered and weighted per target row."""

    def __init__(self, source: nn.Linear, pieces: torch.Tensor, weights: torch.Tensor, token_map: Any):
        super().__init__()
        self.weight, self.bias = source.weight, source.bias  # shared with the source head (and tied embedding)
        self.register_buffer("pieces", pieces.to(source.weight.device), persistent=False)
        self.register_buffer("piece_weights", weights.to(source.weight.device), persistent=False)
        self.register_buffer("mixing", _mixing_matrix(pieces, weights, source.weight.shape[0] + 1).to(
            source.weight.device), persistent=False)  # sparse (V_target, V_source + 1)
        self.in_features, self.out_features = source.in_features, pieces.shape[0]
        self.token_map = token_map

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        z = F.linear(hidden, self.weight, self.bias)  # (..., V_source)
        z = torch.cat([z, z.mean(-1, keepdim=True)], -1)  # the mean row's logit is the mean of the logits
        flat = z.reshape(-1, z.shape[-1]).float()  # (N, V_source + 1); the sparse matmul runs in fp32
        return (self.mixing.float() @ flat.T).T.reshape(*z.shape[:-1], self.out_features).to(z.dtype)

    def dense(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The (V_target, d_model) weight and (V_target,) bias this module stands for."""
        bias = None if self.bias is None else mix_rows(self.bias.detach(), self.pieces, self.piece_weights)
        return mix_rows(self.weight.detach(), self.pieces, self.piece_weights), bias


def factor_vocabulary(model: nn.Module, token_map: Any) -> nn.Module:
    """Put `model` (an HF causal LM in the map's source vocabulary) in the map's target vocabulary, in place:
    its embedding and head become MappedEmbedding / MappedHead over the same weights (ties kept)."""
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    if type(embed) is not nn.Embedding or type(head) is not nn.Linear:
        raise ValueError(f"the factored layout needs a plain nn.Embedding and nn.Linear head, not "
                         f"{type(embed).__name__} / {type(head).__name__}; transplant with layout='dense'")
    if embed.weight.shape[0] != token_map.delta_rows or head.weight.shape[0] != token_map.delta_rows:
        raise ValueError(f"the token map expects {token_map.delta_rows} source rows but the model has "
                         f"{embed.weight.shape[0]} embedding / {head.weight.shape[0]} head rows")
    pieces, weights = row_pieces(token_map)
    model.set_input_embeddings(MappedEmbedding(embed, pieces, weights, token_map))
    model.set_output_embeddings(MappedHead(head, pieces, weights, token_map))
    return model


def mapped_token_map(model: nn.Module) -> Any:
    """The token map of a model in the factored layout, None for an ordinary one."""
    head = model.get_output_embeddings()
    return head.token_map if isinstance(head, MappedHead) else None


def logits_rows(model: nn.Module) -> int:
    """Width of a causal LM's logits (its head's out_features: the target width for a factored model)."""
    head = model.get_output_embeddings()
    return int(getattr(head, "out_features", None) or head.weight.shape[0])


def vocab_matrices(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(input embedding, head weight, head bias) as dense matrices, whatever the layout."""
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    matrix = embed.dense() if isinstance(embed, MappedEmbedding) else embed.weight
    weight, bias = head.dense() if isinstance(head, MappedHead) else (head.weight, getattr(head, "bias", None))
    return matrix, weight, bias
