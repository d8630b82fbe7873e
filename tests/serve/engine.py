"""A stand-in for vLLM's persistent batch (vllm/v1/worker/gpu_input_batch.py), to test DeltaHost without vLLM.

Requests arrive at given steps and take the lowest free batch index (else the end), finished requests leave,
holes are condensed by one-way moves of the last rows, and every few steps two rows swap: the same removed /
added / moved reports vLLM gives its logits processors, in the same order. Greedy decoding with an HF model
(the whole sequence each step: a tiny model, no cache to get wrong).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from crossmodel.serve import DeltaHost


@dataclass(eq=False)
class Request:
    prompt_ids: list[int]
    extra_args: dict | None
    max_tokens: int
    arrive: int = 0
    output: list[int] = field(default_factory=list)


def run(user_model: Any, host: DeltaHost, requests: list[Request], swap_every: int = 3) -> list[list[int]]:
    """Greedy outputs of `requests`, steered through `host` as vLLM would drive it."""
    batch: list[Request | None] = []
    holes: list[int] = []
    step = 0
    while any(len(r.output) < r.max_tokens for r in requests):
        added, moved = [], []
        for r in [r for r in requests if r.arrive == step]:
            index = holes.pop(holes.index(min(holes))) if holes else len(batch)
            if index == len(batch):
                batch.append(None)
            batch[index] = r
            added.append((index, r.extra_args, r.prompt_ids, r.output))
        holes.sort()
        while holes:  # condense: the last row moves into the lowest hole
            last = max(i for i, r in enumerate(batch) if r is not None) if any(batch) else -1
            if holes[0] >= last:
                break
            hole = holes.pop(0)
            batch[hole], batch[last] = batch[last], None
            moved.append((last, hole, False))
        removed = sorted(holes, reverse=True)
        while batch and batch[-1] is None:
            batch.pop()
        holes = []
        if swap_every and step % swap_every == swap_every - 1 and len(batch) > 1:
            batch[0], batch[-1] = batch[-1], batch[0]
            moved.append((0, len(batch) - 1, True))
        host.update(removed, added, moved)
        if batch:
            with torch.no_grad():
                logits = torch.stack([user_model(torch.tensor([r.prompt_ids + r.output])).logits[0, -1].float()
                                      for r in batch])  # (B, V_user)
            tokens = host.apply(logits).argmax(-1)
            for i, r in enumerate(batch):
                r.output.append(int(tokens[i]))
                if len(r.output) == r.max_tokens:
                    batch[i] = None
                    holes.append(i)
        step += 1
    host.update(sorted(holes, reverse=True), [], [])  # the last requests leave, as vLLM reports at its next step
    return [r.output for r in requests]
