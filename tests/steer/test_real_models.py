"""Steering on real zoo models (slow tier): SmolLM2-135M-Instruct (same vocabulary) and Gemma-3-270m with a
delta in SmolLM2's vocabulary (cross vocabulary, frequent tokenization mismatches)."""

import pytest
import torch

from crossmodel.steer import DeltaModel, FullReencodeFeed, ReencodeFeed, steer

pytestmark = pytest.mark.slow

PROMPTS = ["The capital of France is", "Write a haiku about the sea.",
           "List three prime numbers and explain why each one is prime:", "Hi"]


@pytest.fixture(scope="module")
def smol():
    from crossmodel.models import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def gemma():
    from crossmodel.models import load_model

    return load_model("gemma-3-270m")


@pytest.fixture(scope="module")
def smol_delta(smol):
    return DeltaModel.create(vocabulary_of=smol, layers=2, d_model=128, heads=4, init_from="template", seed=0)


@pytest.fixture(scope="module")
def gemma_to_smol(gemma, smol, smol_delta):
    from crossmodel.vocab import TokenMap

    return TokenMap.build(gemma.tokenizer, smol.tokenizer, user_rows=gemma.model.get_output_embeddings().weight.shape[0],
                          delta_rows=smol_delta.rows)


def _hf_greedy(loaded, steered, prompts, n):
    inputs = steered.encode(prompts)
    out = loaded.model.generate(**inputs, max_new_tokens=n, do_sample=False, pad_token_id=steered.pad_id)
    return out[:, inputs["input_ids"].shape[1]:]


@pytest.mark.parametrize("batch", [1, 4])
def test_alpha_zero_same_vocab_smollm2(smol, smol_delta, batch):
    steered = steer(smol, deltas=[(smol_delta, 0.0, None)])
    assert torch.equal(steered.generate_ids(PROMPTS[:batch], 24), _hf_greedy(smol, steered, PROMPTS[:batch], 24))


@pytest.mark.parametrize("batch", [1, 4])
def test_alpha_zero_cross_vocab_gemma(gemma, smol_delta, gemma_to_smol, batch):
    steered = steer(gemma, deltas=[(smol_delta, 0.0, gemma_to_smol)])
    assert torch.equal(steered.generate_ids(PROMPTS[:batch], 24), _hf_greedy(gemma, steered, PROMPTS[:batch], 24))


def test_identity_map_equals_same_vocab_smollm2(smol, smol_delta):
    from crossmodel.vocab import TokenMap

    same = steer(smol, deltas=[(smol_delta, 4.0, None)]).generate_ids(PROMPTS, 24)
    identity = TokenMap.identity(smol.tokenizer, rows=smol_delta.rows)
    cross = steer(smol, deltas=[(smol_delta, 4.0, identity)]).generate_ids(PROMPTS, 24)
    assert torch.equal(same, cross)
    assert not torch.equal(same, steer(smol).generate_ids(PROMPTS, 24))  # alpha=4 really steers


def test_incremental_sync_equals_full_reencode_gemma_user(gemma, smol_delta):
    tokens = steer(gemma).generate_ids(PROMPTS, 40)  # gemma's own text, (B, 40)
    incremental = ReencodeFeed(smol_delta.model, smol_delta.tokenizer)
    full = FullReencodeFeed(smol_delta.model, smol_delta.tokenizer)
    worst, revised = 0.0, 0
    worst = max(worst, (incremental.start(None, None, PROMPTS) - full.start(None, None, PROMPTS)).abs().max().item())
    for t in range(1, tokens.shape[1] + 1):
        texts = gemma.tokenizer.batch_decode(tokens[:, :t], skip_special_tokens=False)
        before = [list(c) for c in incremental.consumed]
        inc, ref = incremental.step(None, texts), full.step(None, texts)
        revised += sum(c != now[:len(c)] for c, now in zip(before, incremental.consumed))
        worst = max(worst, (inc - ref).abs().max().item())
    print(f"max |incremental - full| = {worst:.2e} over {tokens.shape[1]} steps, {revised} revisions")
    assert revised > 0 and worst <= 1e-5


@pytest.mark.parametrize("cross", [False, True], ids=["smollm2-same", "gemma-cross"])
def test_logits_processor_equals_native_real(cross, smol, gemma, smol_delta, gemma_to_smol):
    user, entry = (gemma, (smol_delta, 4.0, gemma_to_smol)) if cross else (smol, (smol_delta, 4.0, None))
    steered = steer(user, deltas=[entry])
    native = steered.generate_ids(PROMPTS, 20)
    proc = steered.logits_processor(PROMPTS)
    out = user.model.generate(**proc.inputs, logits_processor=[proc], do_sample=False, max_new_tokens=20,
                              pad_token_id=steered.pad_id)
    assert torch.equal(out[:, proc.inputs["input_ids"].shape[1]:], native)
