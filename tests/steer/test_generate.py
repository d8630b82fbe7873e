"""Steered generation on tiny random models: alpha=0 exactness, identity map == same vocabulary, incremental
cross-vocabulary sync == full re-encode, several deltas, fill policy, sampling, stop strings and streaming."""

from types import SimpleNamespace

import pytest
import torch

from .conftest import make_bpe_tokenizer, make_model
from crossmodel.steer import DeltaModel, FullReencodeFeed, ReencodeFeed, combine, steer
from crossmodel.vocab import TokenMap

PROMPTS = ["Hello there", "The quick brown fox jumps over", "a", "Tokenizers split text"]


def _hf_greedy(user, steered, prompts, n):
    inputs = steered.encode(prompts)
    out = user.model.generate(**inputs, max_new_tokens=n, do_sample=False, pad_token_id=steered.pad_id)
    return out[:, inputs["input_ids"].shape[1]:]


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["batch1", "batch4"])
def test_alpha_zero_equals_user_generate_same_vocab(char_user, char_delta, prompts):
    steered = steer(char_user, deltas=[(char_delta, 0.0, None)])
    assert torch.equal(steered.generate_ids(prompts, 24), _hf_greedy(char_user, steered, prompts, 24))


@pytest.mark.parametrize("prompts", [PROMPTS[:1], PROMPTS], ids=["batch1", "batch4"])
def test_alpha_zero_equals_user_generate_cross_vocab(char_user, bpe_delta, char_tok, bpe_tok, prompts):
    token_map = TokenMap.build(char_tok, bpe_tok)
    steered = steer(char_user, deltas=[(bpe_delta, 0.0, token_map)])
    assert torch.equal(steered.generate_ids(prompts, 24), _hf_greedy(char_user, steered, prompts, 24))


def test_steering_changes_output(char_user, char_delta):
    plain = steer(char_user).generate_ids(PROMPTS, 16)
    steered = steer(char_user, deltas=[(char_delta, 3.0, None)]).generate_ids(PROMPTS, 16)
    assert not torch.equal(plain, steered)


def test_identity_map_equals_same_vocab_path(char_user, char_delta, char_tok):
    # char tokenizer: decode/re-encode is lossless, so the re-encoding feed sees exactly the user's tokens
    same = steer(char_user, deltas=[(char_delta, 2.0, None)]).generate_ids(PROMPTS, 24)
    cross = steer(char_user, deltas=[(char_delta, 2.0, TokenMap.identity(char_tok))]).generate_ids(PROMPTS, 24)
    assert torch.equal(same, cross)


CONTINUATIONS = ["the quick brown fox jumps over the lazy dog", " tokenizers split text differently",
                 "café — naïve “quotes” and emoji 🙂 end"]


def _byte_level_ids(tok, text):
    """`text` as one byte-level token per UTF-8 byte: decoding a prefix can end inside a character."""
    pieces = "".join(p for p, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text))
    return tok.convert_tokens_to_ids(list(pieces))


def _sync_pair(user_tok, delta, rows):
    """Per-step delta logits of the incremental and full re-encode feeds while each row's text grows by one
    user token per step; also how many steps revised delta tokens that were already consumed."""
    steps = max(len(r) for r in rows)
    incremental = ReencodeFeed(delta.model, delta.tokenizer)
    full = FullReencodeFeed(delta.model, delta.tokenizer)
    prompts = PROMPTS[:len(rows)]
    pairs, mismatches = [(incremental.start(None, None, prompts), full.start(None, None, prompts))], 0
    for t in range(1, steps + 1):
        texts = user_tok.batch_decode([r[:t] for r in rows])
        before = [list(c) for c in incremental.consumed]
        pairs.append((incremental.step(None, texts), full.step(None, texts)))
        mismatches += sum(c != now[:len(c)] for c, now in zip(before, incremental.consumed))
    return pairs, mismatches


@pytest.mark.parametrize("user_kind", ["char", "byte"])
def test_incremental_sync_equals_full_reencode(user_kind, char_tok, bpe_tok, bpe_delta):
    if user_kind == "char":  # char user, BPE delta: merges keep revising the last delta tokens
        user_tok, delta = char_tok, bpe_delta
        rows = [char_tok(c, add_special_tokens=False).input_ids for c in CONTINUATIONS[:2]]
    else:  # byte-level user emitting single bytes (incomplete UTF-8 characters), a smaller BPE delta
        user_tok, small = bpe_tok, make_bpe_tokenizer(300)
        delta = SimpleNamespace(model=make_model(small, seed=5), tokenizer=small)
        rows = [_byte_level_ids(bpe_tok, c) for c in CONTINUATIONS]
    pairs, mismatches = _sync_pair(user_tok, delta, rows)
    assert mismatches > 5  # the re-tokenization really did revise earlier delta tokens
    for step, (inc, full) in enumerate(pairs):
        assert torch.allclose(inc, full, atol=1e-5, rtol=0), f"step {step}: {(inc - full).abs().max()}"


def test_incremental_and_full_generate_same_tokens(char_user, bpe_delta, char_tok, bpe_tok):
    token_map = TokenMap.build(char_tok, bpe_tok)
    inc = steer(char_user, deltas=[(bpe_delta, 1.5, token_map)]).generate_ids(PROMPTS, 20)
    full = steer(char_user, deltas=[(bpe_delta, 1.5, token_map)], sync="full").generate_ids(PROMPTS, 20)
    assert torch.equal(inc, full)


def test_two_deltas_add_their_terms(char_user, char_delta, char_tok):
    other = DeltaModel.create(vocabulary_of=char_user, layers=1, d_model=32, heads=2, seed=9)
    prompt = ["Hello"]
    ids = char_tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        u, d1, d2 = (m(ids).logits[:, -1] for m in (char_user.model, char_delta.model, other.model))
    for rule in ("basenormalize", "normalize", "add"):
        steered = steer(char_user, deltas=[(char_delta, 0.7, None), (other, -0.4, None)], rule=rule)
        expected = combine(combine(u, d1, rule, 0.7), combine(torch.zeros_like(u), d2, rule, -0.4)
                           - combine(torch.zeros_like(u), torch.zeros_like(d2), rule, 0.0), "add", 1.0)
        got = steered.score(prompt, ["x"])[0]
        assert torch.allclose(got, torch.log_softmax(expected, -1)[0, [char_tok.convert_tokens_to_ids("x")]],
                              atol=1e-5)


def test_fill_policy_for_unmapped_tokens(char_user, char_tok, bpe_tok, bpe_delta):
    token_map = TokenMap.build(char_tok, bpe_tok)
    unmapped = (token_map.ids < 0).nonzero().flatten()
    assert len(unmapped) > 0
    prompt = ["Hello"]
    fills = {}
    for fill in (0.0, -50.0):
        steered = steer(char_user, deltas=[(bpe_delta, 1.0, token_map)], rule="add", fill=fill)
        fills[fill] = steered.score(prompt, [char_tok.convert_ids_to_tokens(int(unmapped[-1]))])[0]
    assert fills[-50.0] < fills[0.0] - 40  # the unmapped token lost (about) 50 nats of logit
    with pytest.raises(ValueError, match="finite"):
        steer(char_user, deltas=[(bpe_delta, 1.0, token_map)], fill=float("-inf"))


def test_sampling_is_seeded_and_top_k_1_is_greedy(char_user, char_delta):
    steered = steer(char_user, deltas=[(char_delta, 1.0, None)])
    a = steered.generate_ids(PROMPTS, 12, do_sample=True, temperature=1.5, top_p=0.9, seed=7)
    b = steered.generate_ids(PROMPTS, 12, do_sample=True, temperature=1.5, top_p=0.9, seed=7)
    c = steered.generate_ids(PROMPTS, 12, do_sample=True, temperature=1.5, top_p=0.9, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = steered.generate_ids(PROMPTS, 12)
    assert torch.equal(steered.generate_ids(PROMPTS, 12, do_sample=True, top_k=1, seed=3), greedy)
    with pytest.raises(ValueError, match="temperature"):
        steered.generate(PROMPTS, 4, do_sample=True, temperature=0.0)


def test_stop_strings_and_streaming(char_user, char_delta):
    steered = steer(char_user, deltas=[(char_delta, 1.0, None)])
    full = steered.generate(PROMPTS[:1], 30)[0]
    assert len(full) >= 10
    stop = full[5:7]
    cut = steered.generate(PROMPTS[:1], 30, stop=[stop])[0]
    assert cut == full[: full.index(stop)]
    pieces = list(steered.stream(PROMPTS[0], 30))
    assert len(pieces) > 1 and "".join(pieces) == full
    assert "".join(steered.stream(PROMPTS[0], 30, stop=[stop])) == cut


def test_user_tokens_longer_than_their_delta_token_lose_the_extension_penalty(bpe_user, bpe_tok, char_tok,
                                                                              char_delta):
    """A BPE user token such as "the" maps to the character delta's "t": the delta predicted "t", not "the"."""
    token_map = TokenMap.build(bpe_tok, char_tok, mode="normalized")
    assert int(token_map.extends.sum()) > 0
    logits = torch.randn(3, char_delta.rows)
    for penalty in (0.0, 3.0):
        slot = steer(bpe_user, deltas=[(char_delta, 1.0, token_map)], extension_penalty=penalty).slots[0]
        assert torch.equal(slot.to_user(logits), token_map.gather(logits) - penalty * token_map.extends.float())
    assert steer(bpe_user, deltas=[(char_delta, 1.0, token_map)]).slots[0].extension_penalty == 2.0  # the default
    with pytest.raises(ValueError, match="extension_penalty=-1"):
        steer(bpe_user, deltas=[(char_delta, 1.0, token_map)], extension_penalty=-1.0)


def test_a_delta_trained_in_the_plain_format_makes_the_user_read_it_too(char_user, char_delta):
    import copy
    import dataclasses

    from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE

    plain = copy.copy(char_delta)
    plain.config = dataclasses.replace(char_delta.config, chat_template=PLAIN_CHAT_TEMPLATE)
    own = "{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|bot|>{% endif %}"
    steered = steer(char_user, deltas=[(plain, 1.0, None)])
    user_text = steered.prompt_texts(["Hi"], chat=True)[0]
    assert user_text.endswith("Question: Hi\nAnswer:") and user_text == steered.delta_prompt_texts(["Hi"], True)[0][0]
    explicit = steer(char_user, deltas=[(plain, 1.0, None)], chat_template=own).prompt_texts(["Hi"], True)[0]
    assert explicit.endswith("<|user|>Hi<|bot|>")  # an explicit template still wins
