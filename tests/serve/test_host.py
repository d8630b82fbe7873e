"""DeltaHost driven like vLLM drives a logits processor (tests/serve/engine.py): every request gets exactly the
greedy tokens steer(...).generate_ids gives it alone — same and other vocabulary, mixed batches, requests that
join late, leave early, move and swap — and unsteered rows stay untouched."""

from __future__ import annotations

import pytest
import torch

from crossmodel.serve import DeltaHost
from crossmodel.steer import steer

from .engine import Request, run

PROMPTS = ["The quick brown", "A delta model", "Once upon a time there", "Tokenizers split", "Cross-model"]
STEPS = 12


def host_for(user, same_delta, cross_delta, cross_map) -> DeltaHost:
    return DeltaHost.from_models({"same": same_delta, "cross": cross_delta}, user.tokenizer,
                                 user.model.config.vocab_size, maps={"cross": cross_map})


def alone(user, prompt: str, steps: int, delta=None, alpha: float = 1.0, token_map=None) -> list[int]:
    deltas = [] if delta is None else [(delta, alpha, token_map)]
    ids = steer(user, deltas=deltas).generate_ids([prompt], steps, chat=False)[0].tolist()
    return ids[: ids.index(user.tokenizer.eos_token_id) + 1] if user.tokenizer.eos_token_id in ids else ids


def until_eos(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos) + 1] if eos in ids else ids


@pytest.fixture(scope="module")
def host(user, same_delta, cross_delta, cross_map):
    return host_for(user, same_delta, cross_delta, cross_map)


@pytest.mark.parametrize("which", ["same", "cross"])
def test_each_request_gets_what_it_gets_alone(user, same_delta, cross_delta, cross_map, which):
    host = host_for(user, same_delta, cross_delta, cross_map)
    delta, token_map = (same_delta, None) if which == "same" else (cross_delta, cross_map)
    requests = [Request(user.tokenizer(p).input_ids, {"delta": which}, STEPS - i, arrive=i)
                for i, p in enumerate(PROMPTS)]
    outputs = run(user.model, host, requests)
    eos = user.tokenizer.eos_token_id
    for prompt, out in zip(PROMPTS, outputs):
        expected = alone(user, prompt, len(out), delta, 1.0, token_map)
        assert until_eos(out, eos) == expected, prompt
    plain = [alone(user, p, len(o)) for p, o in zip(PROMPTS, outputs)]
    assert any(until_eos(o, eos) != p for o, p in zip(outputs, plain)), "the delta should change some output"
    assert not host.running and not host.hosted[which].rows.keys  # every request left, state dropped


def test_mixed_batch(user, same_delta, cross_delta, cross_map, host):
    asks = [None, {"delta": "same"}, {"delta": "same", "alpha": 0.5}, {"delta": "cross", "alpha": 1.0},
            {"delta": "same", "alpha": 0}, {"delta": "cross", "alpha": -0.5}]
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(len(asks))]
    requests = [Request(user.tokenizer(p).input_ids, a, STEPS, arrive=i % 3) for i, (p, a) in
                enumerate(zip(prompts, asks))]
    outputs = run(user.model, host, requests, swap_every=2)
    eos = user.tokenizer.eos_token_id
    deltas = {"same": (same_delta, None), "cross": (cross_delta, cross_map)}
    for prompt, ask, out in zip(prompts, asks, outputs):
        if ask is None or ask.get("alpha") == 0:
            expected = alone(user, prompt, STEPS)  # alpha = 0 is the plain model
        else:
            delta, token_map = deltas[ask["delta"]]
            expected = alone(user, prompt, STEPS, delta, ask.get("alpha", 1.0), token_map)
        assert until_eos(out, eos) == expected, (prompt, ask)


def test_unsteered_rows_are_untouched(user, host):
    host.update([], [(0, None, [1, 40], []), (1, {"delta": "same"}, [1, 41], []),
                     (2, {"delta": "same", "alpha": 0.0}, [1, 42], [])], [])
    logits = torch.randn(3, user.model.config.vocab_size)
    before = logits.clone()
    after = host.apply(logits)
    assert torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])
    assert not torch.allclose(after[1], before[1])
    host.update([0, 1, 2], [], [])
    assert not host.running and not host.hosted["same"].rows.keys


def test_bad_requests_are_refused(host):
    with pytest.raises(ValueError, match="not a delta this server hosts"):
        host.update([], [(0, {"delta": "nope"}, [1, 40], [])], [])
    with pytest.raises(ValueError, match="out of range"):
        host.update([], [(0, {"delta": "same", "alpha": 1e9}, [1, 40], [])], [])
