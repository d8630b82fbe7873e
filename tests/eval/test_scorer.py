"""PlainModel: scores equal a hand-written full forward, are independent of batching, and respect the context."""

import pytest
import torch

from crossmodel.eval import PlainModel, Evaluable


def _manual_logprobs(model, tok, prompt: str, cont: str, chat: bool) -> torch.Tensor:
    p = PlainModel(model, tok).prompt_ids(prompt, chat)
    c = tok.encode(cont, add_special_tokens=False)
    with torch.no_grad():
        logits = model(torch.tensor([p + c])).logits[0].log_softmax(-1)  # (T, V)
    return torch.stack([logits[len(p) - 1 + i, t] for i, t in enumerate(c)])


@pytest.mark.parametrize("chat", [True, False])
def test_score_matches_full_forward_and_batching(tiny, tok, chat):
    prompts = ["Who wrote Romeo and Juliet?", "What is the capital of France? Tell me."]
    conts = [" William Shakespeare wrote it.", " Paris"]
    plain = PlainModel(tiny, tok, batch_size=2)
    assert isinstance(plain, Evaluable)
    batched = plain.score(prompts, conts, chat=chat)
    for prompt, cont, got in zip(prompts, conts, batched):
        want = _manual_logprobs(tiny, tok, prompt, cont, chat)
        assert got.shape == want.shape == (len(tok.encode(cont, add_special_tokens=False)),)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(PlainModel(tiny, tok, batch_size=1).score([prompt], [cont], chat=chat)[0], got,
                                   atol=1e-5, rtol=1e-5)


def test_chat_prompt_uses_plain_template_when_tokenizer_has_none(tiny, tok):
    ids = PlainModel(tiny, tok).prompt_ids("Who?", chat=True)
    assert tok.decode(ids) == "<s>Question: Who?\nAnswer:"
    assert ids == tok("Question: Who?\nAnswer:").input_ids  # BOS once, exactly as the tokenizer adds it


def test_answer_longer_than_context_is_truncated(tok, model_factory):
    model = model_factory(tok, context=24)
    plain = PlainModel(model, tok)
    prompt_len = len(plain.prompt_ids("Who?", chat=False))
    long_answer = " The author is Basil Mahfouz Al-Kuwaiti." * 5
    with pytest.warns(UserWarning, match="exceeds the context"):
        (lp,) = plain.score(["Who?"], [long_answer], chat=False)
    assert lp.numel() == 24 - prompt_len
    assert plain.truncated == 1
    with pytest.raises(ValueError, match="fills the model's context"):
        plain.score([long_answer], [" x"], chat=False)


def test_generate_batched_equals_one_by_one(tiny, tok):
    prompts = ["Who wrote the play?", "The capital of Italy is", "Basil"]
    batched = PlainModel(tiny, tok, batch_size=3).generate(prompts, max_new_tokens=6, chat=False)
    single = [PlainModel(tiny, tok, batch_size=1).generate([p], max_new_tokens=6, chat=False)[0] for p in prompts]
    assert batched == single
    assert all(isinstance(t, str) for t in batched) and any(batched)


def test_bad_arguments(tiny, tok):
    plain = PlainModel(tiny, tok)
    with pytest.raises(ValueError, match="continuations"):
        plain.score(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="max_new_tokens"):
        plain.generate(["a"], max_new_tokens=0)
