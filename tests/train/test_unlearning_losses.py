"""SimNPO and UNDIAL on tiny models: one step moves the forget answers down; UNDIAL's target is the frozen model
itself at γ = 0 and stays bounded; the KL retain term is zero at the frozen model, where CE is not."""

import pytest
import torch

from crossmodel.train.combined import combined_for_batch
from crossmodel.train.data import collate, encode_examples, load_examples
from crossmodel.train.facts import write_facts
from crossmodel.train.losses import LossOptions, get_loss
from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE


@pytest.fixture
def forget_batch(tokenizer, tmp_path):
    write_facts(tmp_path / "f.jsonl", n_authors=1, seed=3)
    enc = encode_examples(load_examples(tmp_path / "f.jsonl")[:4], tokenizer, PLAIN_CHAT_TEMPLATE, 96)
    return collate(enc, list(range(len(enc))), tokenizer.pad_token_id)


def _stats(delta, template, batch):
    return combined_for_batch(delta, batch.input_ids, batch.attention_mask, batch.labels, template=template)


def _zero(model):
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


@pytest.mark.parametrize("task", ["simnpo", "undial", "npo"])
def test_one_step_lowers_the_forget_answers(task, template, delta, forget_batch):
    before = float(_stats(delta, template, forget_batch).logprob().mean().detach())
    loss = get_loss(task)(_stats(delta, template, forget_batch), None, LossOptions())
    loss.backward()
    with torch.no_grad():
        for p in delta.parameters():
            p -= 1e-2 * p.grad / (p.grad.norm() + 1e-12)
    after = float(_stats(delta, template, forget_batch).logprob().mean().detach())
    assert after < before


def test_undial_targets_the_frozen_model_and_is_bounded(template, delta, forget_batch):
    zero = _zero(type(template)(template.config).train())  # delta logits 0: combined = template
    c = _stats(zero, template, forget_batch)
    loss = get_loss("undial")(c, None, LossOptions(undial_gamma=0.0))
    loss.backward()
    grads = [p.grad.abs().max() for p in zero.parameters() if p.grad is not None]
    assert max(grads) < 1e-5  # at γ = 0 the frozen model is already the teacher: nothing to learn
    ce = _stats(delta, template, forget_batch).adjusted_ce(10.0).detach()
    assert torch.isfinite(ce).all() and float(ce.min()) > 0  # a cross-entropy: bounded below, unlike −CE


def test_kl_retain_term_is_zero_at_the_frozen_model_and_ce_is_not(template, forget_batch):
    zero = _zero(type(template)(template.config).eval())
    forget, retain = _stats(zero, template, forget_batch), _stats(zero, template, forget_batch)
    for task in ("simnpo", "undial", "npo", "idk"):
        alone = get_loss(task)(forget, None, LossOptions())
        with_kl = get_loss(task)(forget, retain, LossOptions(retain_loss="kl"))
        with_ce = get_loss(task)(forget, retain, LossOptions(retain_loss="ce"))
        torch.testing.assert_close(with_kl, alone, atol=1e-5, rtol=1e-5)
        assert float(with_ce - alone) > 0.1  # the template's own NLL on the retain answers
    with pytest.raises(ValueError, match="retain_loss"):
        get_loss("npo")(forget, retain, LossOptions(retain_loss="mse"))


@pytest.mark.parametrize("task", ["grad_diff", "kl", "idk", "npo", "simnpo", "undial"])
def test_retain_weight_scales_the_retain_term(task, template, delta, forget_batch):
    forget, retain = _stats(delta, template, forget_batch), _stats(delta, template, forget_batch)
    terms = [float(get_loss(task)(forget, retain, LossOptions(retain_weight=w)).detach()) for w in (0.0, 1.0, 3.0)]
    assert terms[1] != pytest.approx(terms[0])  # the retain term is there ...
    assert terms[2] - terms[0] == pytest.approx(3 * (terms[1] - terms[0]), rel=1e-5)  # ... and scales linearly


def test_loss_options_read_the_train_config():
    from crossmodel.train import TrainConfig

    cfg = TrainConfig(task="idk", retain_loss="kl", retain_weight=2.5, undial_gamma=3.0).resolved(10)
    assert LossOptions.of(cfg) == LossOptions(retain_loss="kl", retain_weight=2.5, undial_gamma=3.0,
                                              delta_lm_weight=1.0)  # auto: idk fits its refusals by CE
    with pytest.raises(ValueError, match="retain_weight"):
        TrainConfig(retain_weight=-1)
