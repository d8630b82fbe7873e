"""The engine-side bookkeeping of the vLLM delta processor, free of vLLM itself (so it is tested without it).

vLLM keeps a *persistent batch*: row i of the logits belongs to whichever request sits at batch index i, and
before every step it reports which indices were removed, which were added (with the request's sampling params,
prompt ids and a live reference to its output ids) and which were moved or swapped. `DeltaHost` mirrors that
index -> request table for the requests that ask for a delta, and `apply` steers exactly their rows:
per delta, one batched forward brings every request's delta up to its text (`DeltaRows`), the delta logits go
into the served model's vocabulary (`DeltaSlot.to_user`: a token map for another vocabulary) and the delta's
rule combines them (`steer/combine.py`), one call per distinct alpha. Every other row is left untouched.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import torch

from crossmodel.serve.config import DeltaRequest, ServeConfig, ServedDelta, delta_request
from crossmodel.serve.rows import DeltaRows
from crossmodel.steer.combine import combine
from crossmodel.steer.delta import DeltaModel, check_alpha, vocab_fingerprint
from crossmodel.steer.generate import DeltaSlot
from crossmodel.steer.sync import complete_text
from crossmodel.vocab import TokenMap


@dataclass(eq=False)  # identity: a request is a key of its delta's rows
class Running:
    """One running request that asks for a delta: strength, the ids vLLM gave, and for another vocabulary the
    prompt's text (read once)."""

    delta: str
    alpha: float
    prompt_ids: list[int]
    output_ids: list[int]  # vLLM's own list: it grows as the request generates
    prompt_text: str = ""
    joined: bool = False  # prefilled into its delta's rows


@dataclass
class Hosted:
    """A delta as the host runs it: the slot steer's loop would use, its rule, and its batch of rows."""

    slot: DeltaSlot
    rule: str
    rows: DeltaRows = field(init=False)

    def __post_init__(self):
        self.rows = DeltaRows(self.slot.model, self.slot.tokenizer)


def _attach(served: ServedDelta, user_tokenizer: Any, user_fp: str, user_rows: int, fill: float,
            device: Any) -> Hosted:
    """Load one delta (and its map) and check it against the served model's vocabulary and logits width."""
    delta = DeltaModel.load(served.path, device=str(device))
    delta_fp = delta.config.vocab_fingerprint or vocab_fingerprint(delta.tokenizer)
    token_map = None
    if served.token_map is not None:
        token_map = TokenMap.load(served.token_map, user=user_tokenizer, delta=delta.tokenizer)
        token_map = token_map.with_extensions(user_tokenizer, delta.tokenizer)  # maps saved before `extends`
        if token_map.user_rows != user_rows or token_map.delta_rows != delta.rows:
            raise ValueError(f"--map {served.name}={served.token_map} is for logits widths user="
                             f"{token_map.user_rows}, delta={token_map.delta_rows} but the served model has "
                             f"{user_rows} and the delta {delta.rows}; rebuild it with `crossmodel map`")
    elif delta_fp != user_fp:
        raise ValueError(f"--delta {served.name}={served.path} uses another vocabulary than the served model; "
                         f"build a token map with `crossmodel map --user MODEL --delta {served.path} --mode "
                         f"normalized --out MAP_DIR` and pass --map {served.name}=MAP_DIR")
    alpha = delta.config.alpha if served.alpha is None else served.alpha  # the default of requests that give none
    slot = DeltaSlot(model=delta.model, tokenizer=delta.tokenizer, alpha=alpha, token_map=token_map,
                     user_rows=user_rows, fill=fill, sync="same" if token_map is None else "incremental",
                     name=served.name)
    return Hosted(slot, delta.config.rule)


class DeltaHost:
    """The deltas a server hosts and the requests steered by them, by vLLM batch index."""

    def __init__(self, hosted: Mapping[str, Hosted], user_tokenizer: Any):
        self.hosted = dict(hosted)
        self.user_tokenizer = user_tokenizer
        self.running: dict[int, Running] = {}  # batch index -> request (only requests that ask for a delta)

    @classmethod
    def load(cls, config: ServeConfig, user_tokenizer: Any, user_rows: int, device: Any = "cpu") -> DeltaHost:
        """Load every delta of `config` for a served model with this tokenizer and logits width."""
        user_fp = vocab_fingerprint(user_tokenizer)
        return cls({d.name: _attach(d, user_tokenizer, user_fp, user_rows, config.fill, device)
                    for d in config.deltas}, user_tokenizer)

    @classmethod
    def from_models(cls, deltas: Mapping[str, DeltaModel], user_tokenizer: Any, user_rows: int,
                    maps: Mapping[str, TokenMap] | None = None, fill: float = 0.0) -> DeltaHost:
        """A host over already loaded deltas (tests, notebooks): {name: DeltaModel}, {name: TokenMap}."""
        maps = dict(maps or {})
        hosted = {name: Hosted(DeltaSlot(model=d.model, tokenizer=d.tokenizer, alpha=d.config.alpha,
                                         token_map=maps.get(name), user_rows=user_rows, fill=fill,
                                         sync="incremental" if name in maps else "same", name=name), d.config.rule)
                  for name, d in deltas.items()}
        return cls(hosted, user_tokenizer)

    # ---- the persistent batch --------------------------------------------------------------------------------
    def _request(self, extra_args: Mapping[str, Any] | None, prompt_ids: list[int] | None,
                 output_ids: list[int]) -> Running | None:
        asked: DeltaRequest | None = delta_request(extra_args, list(self.hosted))
        if asked is None:
            return None
        hosted = self.hosted[asked.name]
        alpha = check_alpha(hosted.slot.alpha if asked.alpha is None else asked.alpha, "alpha")
        if alpha == 0:
            return None  # alpha = 0 is the served model alone: leave the row untouched
        if prompt_ids is None:
            raise ValueError("a steered request needs prompt token ids (prompt embeddings cannot be steered)")
        text = "" if hosted.slot.token_map is None else self.user_tokenizer.decode(prompt_ids,
                                                                                   skip_special_tokens=True)
        return Running(asked.name, alpha, list(prompt_ids), output_ids, text)

    def update(self, removed: Iterable[int], added: Iterable[tuple[int, Mapping[str, Any] | None, list[int] | None,
                                                                   list[int]]],
               moved: Iterable[tuple[int, int, bool]]) -> None:
        """Apply one batch update, in vLLM's order: removed indices, added (index, extra_args, prompt ids, live
        output ids), moved (from, to, swap: True for a two-way swap, False for a one-way move)."""
        gone: dict[str, set[Running]] = defaultdict(set)

        def drop(index: int) -> None:
            if (old := self.running.pop(index, None)) is not None:
                gone[old.delta].add(old)

        for index in removed:
            drop(index)
        for index, extra_args, prompt_ids, output_ids in added:
            drop(index)  # an added request may take the index of one that left
            if (request := self._request(extra_args, prompt_ids, output_ids)) is not None:
                self.running[index] = request
        for a, b, swap in moved:
            first, second = self.running.pop(a, None), self.running.pop(b, None)
            if first is not None:
                self.running[b] = first
            if second is not None:
                if swap:
                    self.running[a] = second
                else:  # a one-way move overwrites b: its request left
                    gone[second.delta].add(second)
        for name, requests in gone.items():
            self.hosted[name].rows.leave(requests)

    # ---- one step --------------------------------------------------------------------------------------------
    def _targets(self, hosted: Hosted, requests: Sequence[Running]) -> list[list[int]]:
        """What each request's delta must have read: the user's own ids (same vocabulary), or the prompt text +
        generated text (special tokens kept, a trailing incomplete character held back) in the delta's tokens."""
        if hosted.slot.token_map is None:
            return [r.prompt_ids + r.output_ids for r in requests]
        generated = self.user_tokenizer.batch_decode([r.output_ids for r in requests], skip_special_tokens=False)
        texts = [r.prompt_text + complete_text(g) for r, g in zip(requests, generated)]
        return hosted.slot.tokenizer(texts, add_special_tokens=True).input_ids

    @torch.no_grad()
    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """Steer the rows of requests that ask for a delta, in place; logits (batch, V_user) float32."""
        by_delta: dict[str, list[int]] = defaultdict(list)
        for index, request in self.running.items():
            by_delta[request.delta].append(index)
        for name, indices in by_delta.items():
            hosted = self.hosted[name]
            newcomers = [self.running[i] for i in indices if not self.running[i].joined]
            if newcomers:
                hosted.rows.join(newcomers, self._targets(hosted, newcomers))
                for request in newcomers:
                    request.joined = True
            index_of = {self.running[i]: i for i in indices}
            members: list[Running] = hosted.rows.keys  # type: ignore[assignment]
            z_delta = hosted.rows.step(self._targets(hosted, members))  # (R, V_delta), rows in `members` order
            z_user = hosted.slot.to_user(z_delta.to(logits.device))  # (R, V_user)
            by_alpha: dict[float, list[int]] = defaultdict(list)
            for position, request in enumerate(members):
                by_alpha[request.alpha].append(position)
            for alpha, positions in by_alpha.items():
                rows = [index_of[members[p]] for p in positions]
                if rows == list(range(logits.shape[0])) and positions == rows:
                    # every row of the batch, in order: one combine over the whole tensor, no row copies (each
                    # copy of a (B, 262144) tensor costs as much as the combination itself on a CPU)
                    logits = combine(logits, z_user, hosted.rule, alpha)
                    continue
                index = torch.tensor(rows, device=logits.device)
                picked = torch.tensor(positions, device=logits.device)
                logits[index] = combine(logits[index], z_user[picked], hosted.rule, alpha)  # (r, V_user)
        return logits
