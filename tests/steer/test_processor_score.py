"""The HF LogitsProcessor path equals the native loop; Steered.score; error paths of steer()."""

import pytest
import torch

from .conftest import make_bpe_tokenizer
from crossmodel.steer import DeltaModel, combine, steer
from crossmodel.steer.transplant import transplant
from crossmodel.vocab import TokenMap

PROMPTS = ["Hello there", "The quick brown fox jumps over", "a"]


def _bpe_vocab_delta(bpe_tok):
    delta = DeltaModel.create(vocabulary_of=bpe_tok, layers=1, d_model=32, heads=2, seed=4)
    with torch.no_grad():  # an untrained delta barely moves the scores; make it steer
        delta.model.get_output_embeddings().weight.mul_(30.0)
    return delta


@pytest.mark.parametrize("kind", ["same-vocab", "cross-vocab", "transplanted"])  # transplanted: factored
def test_logits_processor_equals_native(kind, char_user, char_tok, bpe_tok, char_delta, bpe_delta):
    entry = {"same-vocab": lambda: (char_delta, 2.0, None),
             "cross-vocab": lambda: (bpe_delta, 1.5, TokenMap.build(char_tok, bpe_tok)),
             "transplanted": lambda: (transplant(_bpe_vocab_delta(bpe_tok), char_tok)[0], 1.5, None)}[kind]()
    steered = steer(char_user, deltas=[entry])
    native = steered.generate_ids(PROMPTS, 20)
    proc = steered.logits_processor(PROMPTS)
    out = char_user.model.generate(**proc.inputs, logits_processor=[proc], do_sample=False, max_new_tokens=20,
                                   pad_token_id=steered.pad_id)
    assert torch.equal(out[:, proc.inputs["input_ids"].shape[1]:], native)
    plain = char_user.model.generate(**proc.inputs, do_sample=False, max_new_tokens=20, pad_token_id=steered.pad_id)
    assert not torch.equal(plain, out)  # the processor really steered
    again = char_user.model.generate(**proc.inputs, logits_processor=[proc], do_sample=False, max_new_tokens=20,
                                     pad_token_id=steered.pad_id)
    assert torch.equal(again, out)  # reusable: a new generate call restarts the delta feeds


def _plain_logprobs(user, prompt, continuation):
    tok = user.tokenizer
    p, c = tok(prompt).input_ids, tok(continuation, add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = user.model(torch.tensor([p + c])).logits[0].float()
    return torch.log_softmax(logits, -1)[len(p) - 1:-1].gather(-1, torch.tensor(c)[:, None]).squeeze(-1), logits


def test_score_without_deltas_is_plain_logprobs(char_user):
    conts = ["world", " jumps high and far", "bc"]
    got = steer(char_user).score(PROMPTS, conts, batch_size=2)
    for prompt, cont, lp in zip(PROMPTS, conts, got):
        expected, _ = _plain_logprobs(char_user, prompt, cont)
        assert lp.shape == expected.shape and torch.allclose(lp, expected, atol=1e-5)


def test_score_same_vocab_combines_full_forward(char_user, char_delta):
    prompt, cont = "Hello", " there"
    got = steer(char_user, deltas=[(char_delta, 0.8, None)], rule="normalize").score([prompt], [cont])[0]
    tok = char_user.tokenizer
    ids = torch.tensor([tok(prompt).input_ids + tok(cont, add_special_tokens=False).input_ids])
    with torch.no_grad():
        z = combine(char_user.model(ids).logits[0], char_delta.model(ids).logits[0], "normalize", 0.8)
    c = ids[0, -len(cont):]
    expected = torch.log_softmax(z, -1)[-len(cont) - 1:-1].gather(-1, c[:, None]).squeeze(-1)
    assert torch.allclose(got, expected, atol=1e-5)


def test_score_cross_vocab_matches_generation_and_full_sync(char_user, char_tok, bpe_tok, bpe_delta):
    token_map = TokenMap.build(char_tok, bpe_tok)
    steered = steer(char_user, deltas=[(bpe_delta, 2.0, token_map)])
    text = steered.generate(PROMPTS[:1], 8)[0]
    lp = steered.score(PROMPTS[:1], [text])[0]
    # greedy tokens are the argmax of the same combined distribution, so each has the best log-prob there
    full = torch.stack([steered.score(PROMPTS[:1], [text[:i] + ch])[0][-1]
                        for i in range(len(text)) for ch in ("e", text[i])]).view(-1, 2)
    assert torch.all(full[:, 1] >= full[:, 0] - 1e-6)
    assert torch.allclose(full[:, 1], lp, atol=1e-5)
    full_sync = steer(char_user, deltas=[(bpe_delta, 2.0, token_map)], sync="full").score(PROMPTS[:1], [text])[0]
    assert torch.allclose(lp, full_sync, atol=1e-5)
    plain = steer(char_user).score(PROMPTS[:1], [text])[0]
    assert not torch.allclose(lp, plain, atol=1e-3)


def test_error_paths(tmp_path, char_user, char_tok, bpe_tok, bpe_delta, char_delta, bpe_user):
    with pytest.raises(ValueError, match="crossmodel map"):
        steer(char_user, deltas=[(bpe_delta, 1.0, None)])
    other = make_bpe_tokenizer(300)
    wrong_pair = TokenMap.build(char_tok, other)
    with pytest.raises(ValueError, match="delta tokenizer .*fingerprint"):
        steer(char_user, deltas=[(bpe_delta, 1.0, wrong_pair)])
    wrong_user = TokenMap.build(bpe_tok, bpe_tok)
    with pytest.raises(ValueError, match="user tokenizer .*fingerprint"):
        steer(char_user, deltas=[(bpe_delta, 1.0, wrong_user)])
    steered = steer(char_user, deltas=[(char_delta, 1.0, None)])
    with pytest.raises(ValueError, match="context of 256"):
        steered.generate(["x" * 300], 5)
    with pytest.raises(ValueError, match="context of 256"):
        steered.generate(["x" * 200], 100)
    with pytest.raises(ValueError, match="list of strings"):
        steered.generate("a prompt", 5)
    assert steered.prompt_texts(["hi"], chat=True) == ["<s>Question: hi\nAnswer:"]  # no template: the plain format
    with pytest.raises(ValueError, match="rule"):
        steer(char_user, deltas=[(char_delta, 1.0, None)], rule="mean")
    with pytest.raises(ValueError, match="sync"):
        steer(char_user, sync="lazy")
    with pytest.raises(ValueError, match="continuations"):
        steered.score(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="empty"):
        steered.score(["a"], [""])


def test_delta_dir_and_chat_template(tmp_path, char_user, char_delta):
    template = "{% for m in messages %}Q: {{ m['content'] }}\n{% endfor %}A:"
    char_delta.save(tmp_path / "delta")
    steered = steer(char_user, deltas=[(tmp_path / "delta", None, None)], chat_template=template)
    assert steered.slots[0].alpha == char_delta.config.alpha
    assert steered.prompt_texts(["hi"], chat=True) == ["<s>Q: hi\nA:"]  # the tokenizer's BOS, as it adds to text
    assert steered.generate(["hi"], 5, chat=True) == steer(
        char_user, deltas=[(char_delta, None, None)]).generate(["Q: hi\nA:"], 5)
