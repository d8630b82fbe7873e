"""Each loss equals its formula written out on the naive full-logits combined model."""

import pytest
import torch
import torch.nn.functional as F

from crossmodel.train.combined import combined_for_batch
from crossmodel.train.data import Example, collate, encode_examples
from crossmodel.train.facts import generate_facts
from crossmodel.train.losses import LOSSES, LossOptions, get_loss
from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE


def batch_of(tokenizer, records):
    exs = [Example([{"role": "user", "content": r["question"]}], r["answer"]) for r in records]
    return collate(encode_examples(exs, tokenizer, PLAIN_CHAT_TEMPLATE, 96), list(range(len(exs))),
                   tokenizer.pad_token_id)


def seq_sum(values, seq, n):
    return torch.zeros(n).index_add(0, seq, values)


@pytest.fixture
def batches(tokenizer):
    records = generate_facts(2, seed=9)
    return batch_of(tokenizer, records[:3]), batch_of(tokenizer, records[5:9])


def naive_undial(template, delta, batch, gamma):
    """UNDIAL's per-position CE from full logits: teacher = softmax(log p_template − γ at the target)."""
    from crossmodel.steer.combine import combine
    from crossmodel.train.templates import IGNORE_INDEX

    zt = template(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    zd = delta(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    mask = batch.labels[:, 1:] != IGNORE_INDEX
    logp = torch.log_softmax(combine(zt, zd), -1)[:, :-1][mask]  # (N, V)
    lt = torch.log_softmax(zt.float(), -1)[:, :-1][mask].clone()
    lt[torch.arange(len(lt)), batch.labels[:, 1:][mask]] -= gamma
    return -(lt.softmax(-1) * logp).sum(-1)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_matches_formula(name, template, delta, batches, naive_stats):
    forget, retain = batches
    c_f = combined_for_batch(delta, forget.input_ids, forget.attention_mask, forget.labels, template=template,
                             chunk_size=7)
    c_r = combined_for_batch(delta, retain.input_ids, retain.attention_mask, retain.labels, template=template)
    got = get_loss(name)(c_f, c_r, LossOptions(npo_beta=0.3))
    lp_f, _, tlp_f, seq_f = naive_stats(template, delta, forget)
    lp_r, kl_r, _, _ = naive_stats(template, delta, retain)
    ratio = seq_sum(lp_f, seq_f, 3) - seq_sum(tlp_f, seq_f, 3)
    mean_lp = seq_sum(lp_f, seq_f, 3) / seq_sum(torch.ones_like(lp_f), seq_f, 3)
    want = {"sft": -lp_f.mean(), "grad_ascent": lp_f.mean(), "grad_diff": lp_f.mean() - lp_r.mean(),
            "kl": lp_f.mean() + kl_r.mean(), "idk": -lp_f.mean() - lp_r.mean(),
            "npo": -(2 / 0.3) * F.logsigmoid(-0.3 * ratio).mean() - lp_r.mean(),
            "simnpo": -(2 / 2.5) * F.logsigmoid(-2.5 * mean_lp).mean() - lp_r.mean(),
            "undial": naive_undial(template, delta, forget, 10.0).mean() - lp_r.mean()}[name]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in delta.parameters())


def test_npo_is_log2_scaled_at_the_reference(template, tokenizer, batches):
    """With the delta's logits constant, the combined model is the template: NPO = (2/beta) log 2."""
    forget, _ = batches
    delta = type(template)(template.config).eval()  # all-zero weights: delta logits are 0
    with torch.no_grad():
        for p in delta.parameters():
            p.zero_()
    c = combined_for_batch(delta, forget.input_ids, forget.attention_mask, forget.labels, template=template)
    torch.testing.assert_close(get_loss("npo")(c, None, LossOptions(npo_beta=0.1)), torch.tensor(20 * 0.6931472),
                               rtol=1e-5, atol=1e-5)


def test_unknown_task_and_missing_retain(template, delta, batches):
    forget, _ = batches
    c = combined_for_batch(delta, forget.input_ids, forget.attention_mask, forget.labels, template=template)
    with pytest.raises(ValueError, match="unknown task 'dpo'.*grad_diff"):
        get_loss("dpo")
    for name in ("grad_diff", "kl"):
        with pytest.raises(ValueError, match="--retain"):
            get_loss(name)(c, None)


@pytest.mark.parametrize("name", ["sft", "idk", "grad_diff", "npo", "kl"])
def test_delta_lm_weight_adds_the_delta_alone_ce(name, template, delta, batches, naive_stats):
    """delta_lm_weight w adds w × the CE of the delta's own softmax wherever a loss fits targets by CE (sft's data,
    idk's refusals, a CE retain term), and nowhere else (not to −CE(forget), not to a KL retain term)."""
    from crossmodel.train.templates import IGNORE_INDEX

    def alone(batch):
        zd = delta(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        mask = batch.labels[:, 1:] != IGNORE_INDEX
        return -torch.log_softmax(zd.float(), -1)[:, :-1][mask].gather(-1, batch.labels[:, 1:][mask][:, None]).mean()

    forget, retain = batches
    c_f = combined_for_batch(delta, forget.input_ids, forget.attention_mask, forget.labels, template=template,
                             chunk_size=5)
    c_r = combined_for_batch(delta, retain.input_ids, retain.attention_mask, retain.labels, template=template)
    got = get_loss(name)(c_f, c_r, LossOptions(delta_lm_weight=0.7)) - get_loss(name)(c_f, c_r)
    want = {"sft": alone(forget), "idk": alone(forget) + alone(retain), "grad_diff": alone(retain),
            "npo": alone(retain), "kl": torch.tensor(0.0)}[name]
    torch.testing.assert_close(got, 0.7 * want, rtol=1e-4, atol=1e-5)


def test_sft_kl_weight_adds_the_kl_to_the_template(template, delta, batches, naive_stats):
    """sft + sft_kl_weight w: CE(data) + w × mean KL(template ‖ combined) over the same answer positions."""
    forget, retain = batches
    c_f = combined_for_batch(delta, forget.input_ids, forget.attention_mask, forget.labels, template=template,
                             chunk_size=5)
    lp_f, kl_f, _, _ = naive_stats(template, delta, forget)
    got = get_loss("sft")(c_f, None, LossOptions(sft_kl_weight=0.4))
    torch.testing.assert_close(got, -lp_f.mean() + 0.4 * kl_f.mean(), rtol=1e-5, atol=1e-5)
    c_r = combined_for_batch(delta, retain.input_ids, retain.attention_mask, retain.labels, template=template)
    torch.testing.assert_close(get_loss("idk")(c_f, c_r, LossOptions(sft_kl_weight=0.4)), get_loss("idk")(c_f, c_r))
