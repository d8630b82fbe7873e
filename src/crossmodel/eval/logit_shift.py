"""Logit-shift analysis: the observation behind Cross-model Control (Wu et al., NeurIPS 2024, §3) that the shift
fine-tuning causes in a model's next-token scores is similar across models.

A pair is (before, after) on one tokenizer: a model and its fine-tuned copy, or a model and the same model
steered by a delta. On the same texts, the shift at each position is log_softmax(after) − log_softmax(before)
(raw logits are defined only up to a per-position constant, so we compare log-probabilities; `kind="logit"`
gives raw differences). Two pairs are compared at the positions where both have read exactly the same text
(equal character offsets, so different tokenizations line up), over the tokens both vocabularies share
(a TokenMap from pair A's vocabulary to pair B's; the identity on one vocabulary): cosine, Pearson and top-k
overlap, plus the same numbers against B shifted by one position as a control.

Over a whole vocabulary the shift is dominated by tokens neither model would ever emit (a fine-tuned model moves
junk tokens from −40 to −25 nats, say), so we also report `pearson_likely`: the Pearson correlation over the
tokens that either fine-tuned ("after") model ranks in its top k at that position — the tokens decoding can
actually pick. The heatmap shows the tokens pair A's "after" model finds most likely in the first text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

Logprobs = Callable[[torch.Tensor], torch.Tensor]  # ids (1, T) -> (T, V)


def model_logprobs(model, kind: str = "logprob") -> Logprobs:
    """Per-position next-token scores of an HF causal LM: log-probabilities, or raw logits for kind="logit"."""
    if kind not in ("logprob", "logit"):
        raise ValueError(f"kind={kind!r}; choose 'logprob' or 'logit'")

    @torch.no_grad()
    def run(ids: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=ids.to(next(model.parameters()).device)).logits[0].float().cpu()  # (T, V)
        return logits.log_softmax(-1) if kind == "logprob" else logits

    return run


def steered_logprobs(steered) -> Logprobs:
    """Per-position log-probabilities of a steered model (`crossmodel.steer.steer(...)`, deltas in the user's
    own vocabulary): the same combination, checks included, as steered generation."""
    return lambda ids: steered.logprobs(ids).cpu()


@dataclass
class ShiftPair:
    """One (before, after) pair sharing `tokenizer`; `before`/`after` map ids (1, T) to scores (T, V)."""

    name: str
    tokenizer: Any
    before: Logprobs
    after: Logprobs

    def scores(self, text: str) -> tuple[list[int], torch.Tensor, torch.Tensor, list[int]]:
        """(end offset of each position's text, before scores (T, V), after scores (T, V), token ids)."""
        enc = self.tokenizer(text, return_offsets_mapping=True)
        ids = torch.tensor([enc["input_ids"]])
        before, after = self.before(ids), self.after(ids)
        if before.shape != after.shape:
            raise ValueError(f"pair {self.name!r}: before and after give scores of shapes {tuple(before.shape)} "
                             f"and {tuple(after.shape)}; both must use the same vocabulary")
        return [int(end) for _, end in enc["offset_mapping"]], before, after, enc["input_ids"]


def _aligned(ends_a: list[int], ends_b: list[int]) -> list[tuple[int, int]]:
    """Position pairs that have read the same prefix of the text (last position for repeated offsets)."""
    last_b = {end: j for j, end in enumerate(ends_b)}
    last_a = {end: i for i, end in enumerate(ends_a)}
    return [(i, last_b[end]) for end, i in sorted(last_a.items()) if end in last_b]


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    ac, bc = a - a.mean(), b - b.mean()
    return float(ac @ bc / (ac.norm() * bc.norm()).clamp_min(1e-30))


def similarity(a: torch.Tensor, b: torch.Tensor, k: int, likely: torch.Tensor | None = None) -> dict[str, float]:
    """Cosine, Pearson and top-k overlap (|top_k(a) ∩ top_k(b)| / k) of two shift vectors over the same tokens;
    with `likely` (indices into them) also the Pearson over those tokens only, as `pearson_likely`."""
    a, b = a.double(), b.double()
    cosine = float(a @ b / (a.norm() * b.norm()).clamp_min(1e-30))
    k = min(k, a.numel())
    top = set(a.topk(k).indices.tolist()) & set(b.topk(k).indices.tolist())
    out = {"cosine": cosine, "pearson": _pearson(a, b), "topk_overlap": len(top) / k}
    if likely is not None:
        out["pearson_likely"] = _pearson(a[likely], b[likely])
    return out


def likely_tokens(after_a: torch.Tensor, after_b: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the tokens either "after" score vector (over the same shared tokens) ranks in its top k."""
    k = min(k, after_a.numel())
    return torch.cat([after_a.topk(k).indices, after_b.topk(k).indices]).unique()


def _rows(token_map, v_a: int, v_b: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices in A's and B's vocabularies of the tokens compared."""
    if token_map is None:
        if v_a != v_b:
            raise ValueError(f"the pairs' vocabularies differ ({v_a} vs {v_b} rows); pass a token map from the "
                             "first pair's vocabulary to the second's (`crossmodel map`)")
        rows = torch.arange(v_a)
        return rows, rows
    ids = token_map.ids[:v_a]  # (V_a,) -> B's ids, -1 unmapped
    keep = (ids >= 0) & (ids < v_b)
    return torch.nonzero(keep)[:, 0], ids[keep]


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]} if rows else {}


def _example(pair_a, pair_b, shift_a, shift_b, after_a, pos, rows_a, rows_b, n_tokens: int = 12) -> dict[str, Any]:
    """Shifts of the `n_tokens` tokens pair A's after-model finds most likely anywhere in the text, at every
    aligned position, and the per-position Pearson over all shared tokens."""
    a = shift_a[[i for i, _ in pos]][:, rows_a]  # (P, S): shared tokens only
    b = shift_b[[j for _, j in pos]][:, rows_b]  # (P, S)
    top = after_a[[i for i, _ in pos]][:, rows_a].amax(0).topk(min(n_tokens, a.shape[-1])).indices  # (n,)
    labels = [pair_a.tokenizer.decode([int(rows_a[t])]) for t in top]
    return {"tokens": labels, "a": a[:, top].T.tolist(), "b": b[:, top].T.tolist(),
            "pearson": [_pearson(a[p].double(), b[p].double()) for p in range(a.shape[0])],
            "names": [pair_a.name, pair_b.name]}


def compare_shifts(pair_a: ShiftPair, pair_b: ShiftPair, texts: list[str], *, token_map=None, k: int = 20,
                   progress: bool = True) -> dict[str, Any]:
    """Per-position similarity of the two pairs' shifts on `texts`, a summary and a control (B one position
    later), plus the data the heatmap needs (first text: shifts of the most-shifted tokens)."""
    from tqdm.auto import tqdm

    per_text, control, example = [], [], None
    for text in tqdm(texts, desc="logit shift", unit="text", disable=not progress):
        ends_a, before_a, after_a, ids_a = pair_a.scores(text)
        ends_b, before_b, after_b, _ = pair_b.scores(text)
        shift_a, shift_b = after_a - before_a, after_b - before_b  # (T_a, V_a), (T_b, V_b)
        rows_a, rows_b = _rows(token_map, shift_a.shape[-1], shift_b.shape[-1])
        pos = _aligned(ends_a, ends_b)
        if not pos:
            raise ValueError(f"no position of {text[:40]!r} is aligned between the two tokenizations")

        def compare(i: int, j: int) -> dict[str, float]:  # A at position i, B at j, over the shared tokens
            likely = likely_tokens(after_a[i, rows_a], after_b[j, rows_b], k)
            return similarity(shift_a[i, rows_a], shift_b[j, rows_b], k, likely)

        sims = [compare(i, j) for i, j in pos]
        control += [compare(i, j2) for (i, _), (_, j2) in zip(pos, pos[1:])]
        per_text.append({"text": text, "positions": [[i, j] for i, j in pos], "similarity": sims,
                         "tokens": pair_a.tokenizer.convert_ids_to_tokens([ids_a[i] for i, _ in pos])})
        if example is None:
            example = _example(pair_a, pair_b, shift_a, shift_b, after_a, pos, rows_a, rows_b)
    every = [s for t in per_text for s in t["similarity"]]
    return {"summary": {**_mean(every), "positions": len(every), "texts": len(texts), "shared_tokens":
                        int(rows_a.numel()), "control": _mean(control), "k": k},
            "texts": per_text, "example": example}
