"""The chunked combined model equals the naive full-logits computation (values and gradients), and its output
head reproduces each model's own forward."""

import pytest
import torch
from transformers import Gemma3TextConfig, Gemma3ForCausalLM

from crossmodel.train.combined import combined_for_batch, hidden_states, loss_positions, output_head
from crossmodel.train.data import Example, collate, encode_examples
from crossmodel.train.facts import generate_facts
from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE


def make_batch(tokenizer, n=3):
    exs = [Example([{"role": "user", "content": r["question"]}], r["answer"]) for r in generate_facts(1)[:n]]
    return collate(encode_examples(exs, tokenizer, PLAIN_CHAT_TEMPLATE, 96), list(range(n)), tokenizer.pad_token_id)


def test_output_head_matches_forward_for_llama_and_softcapped_gemma3(tokenizer, template):
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, final_logit_softcapping=5.0,
                           sliding_window=8, max_position_embeddings=128)
    gemma = Gemma3ForCausalLM(cfg).eval()
    ids = torch.randint(2, len(tokenizer), (2, 11))
    mask = torch.ones_like(ids)
    for model in (template, gemma):
        with torch.no_grad():
            want = model(input_ids=ids, attention_mask=mask).logits
            got = output_head(model)(hidden_states(model, ids, mask))
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert want.abs().max() <= 5.0  # the cap is really applied


@pytest.mark.parametrize("rule,alpha,chunk", [("basenormalize", 1.0, 5), ("normalize", 0.7, 1),
                                               ("add", 2.0, 1000)])
def test_chunked_statistics_and_gradients_equal_naive(tokenizer, template, delta, naive_stats, rule, alpha, chunk):
    batch = make_batch(tokenizer)
    comb = combined_for_batch(delta, batch.input_ids, batch.attention_mask, batch.labels, template=template,
                              rule=rule, alpha=alpha, chunk_size=chunk)
    loss = -comb.logprob().mean() + comb.kl().mean()
    loss.backward()
    grads = [p.grad.clone() for p in delta.parameters()]
    delta.zero_grad()
    lp, kl, tlp, _ = naive_stats(template, delta, batch, rule, alpha)
    (-lp.mean() + kl.mean()).backward()
    torch.testing.assert_close(comb.logprob().detach(), lp.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(comb.kl().detach(), kl.detach(), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(comb.template_logprob(), tlp, rtol=1e-5, atol=1e-5)
    for g, p in zip(grads, delta.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-7)


def test_loss_positions_shift_labels_and_per_sequence_sums(tokenizer, template, delta):
    batch = make_batch(tokenizer, n=2)
    rows, cols, targets = loss_positions(batch.labels)
    assert (targets == batch.labels[rows, cols + 1]).all()
    comb = combined_for_batch(delta, batch.input_ids, batch.attention_mask, batch.labels, template=template)
    per_seq = comb.per_sequence(comb.template_logprob())
    assert per_seq.shape == (2,)
    torch.testing.assert_close(per_seq[1], comb.template_logprob()[rows == 1].sum())


def test_no_template_source_and_bad_chunk_are_errors(tokenizer, delta):
    batch = make_batch(tokenizer, n=1)
    with pytest.raises(ValueError, match="template"):
        combined_for_batch(delta, batch.input_ids, batch.attention_mask, batch.labels)
    with pytest.raises(ValueError, match="chunk_size"):
        combined_for_batch(delta, batch.input_ids, batch.attention_mask, batch.labels,
                           template_rows=lambda s, e: None, chunk_size=0)
