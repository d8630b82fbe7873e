"""Distillation of a transplanted delta toward the original's mapped logits: position alignment, text loading,
the agreement metric and the loop (loss falls, agreement rises, the teacher stays frozen)."""

import pytest
import torch

from crossmodel.steer import DeltaModel
from crossmodel.steer.transplant import transplant
from crossmodel.train.distill import DistillConfig, aligned_positions, defined_rows, distill, load_texts, logit_agreement
from crossmodel.train.facts import generate_facts, write_facts

from .conftest import pair

TEXTS = [r["question"] + "\n" + r["answer"] for r in generate_facts(3, seed=7)]


def test_aligned_positions_have_read_the_same_text(tokenizer, char_tok):
    text = TEXTS[0]
    s_ids, t_ids, pairs = aligned_positions(text, char_tok, tokenizer, max_length=512)
    assert len(pairs) == len(t_ids)  # every BPE boundary is also a character boundary
    for s, t in pairs:
        assert char_tok.decode(s_ids[:s + 1]) == tokenizer.decode(t_ids[:t + 1])
    _, _, short = aligned_positions(text, char_tok, tokenizer, max_length=8)
    assert 0 < len(short) <= 8 and all(s < 8 and t < 8 for s, t in short)


def test_load_texts_formats_and_errors(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\n second \n")
    assert load_texts(tmp_path / "a.txt", "text") == ["first line", "second"]
    write_facts(tmp_path / "f.jsonl", n_authors=1, seed=0)
    record = generate_facts(1, seed=0)[0]
    assert load_texts(tmp_path / "f.jsonl")[0] == record["question"] + "\n" + record["answer"]
    with pytest.raises(FileNotFoundError, match="write_facts"):
        load_texts(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="format"):
        load_texts(tmp_path / "a.txt", "csv")
    with pytest.raises(ValueError, match="DistillConfig.loss"):
        DistillConfig(loss="l1")
    with pytest.raises(ValueError, match="DistillConfig.target_reduce"):
        DistillConfig(target_reduce="mean")


def test_agreement_is_perfect_for_an_own_vocabulary_transplant(tokenizer):
    source = DeltaModel.create(vocabulary_of=tokenizer, layers=1, d_model=32, heads=4, seed=1)
    moved, token_map = transplant(source, tokenizer)
    scores = logit_agreement(moved, source, token_map, TEXTS)
    assert scores["positions"] > 20
    assert scores["top1"] == scores["top10"] == 1.0 and scores["pearson"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("loss,layout,reduce", [("kl", "factored", None), ("mse", "factored", None),
                                                ("mse", "dense", None), ("mse", "factored", "weighted_sum")])
def test_distill_moves_the_transplant_toward_the_mapped_original(tokenizer, char_tok, loss, layout, reduce):
    source, moved, token_map = pair(tokenizer, char_tok, layout=layout)
    teacher_before = {k: v.clone() for k, v in source.model.state_dict().items()}
    before = logit_agreement(moved, source, token_map, TEXTS)
    cfg = DistillConfig(steps=15, lr=3e-3, batch_size=3, loss=loss, target_reduce=reduce)
    result = distill(moved, source, token_map, TEXTS, cfg)
    after = logit_agreement(moved, source, token_map, TEXTS)
    assert len(result.losses) == 15 and result.positions > 0
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    if loss == "kl":  # each loss improves the agreement it measures
        assert after["kl"] < before["kl"]
    else:
        assert after["pearson"] > before["pearson"]
    assert all(torch.equal(v, source.model.state_dict()[k]) for k, v in teacher_before.items())  # frozen teacher


def test_weighted_sum_target_is_met_exactly_where_both_read_the_same_tokens(tokenizer, char_tok):
    # a character-vocabulary delta moved into the BPE vocabulary: BPE rows are spelled by several characters.
    # "T" is one exact-match token in both, so the transplant's hidden state there equals the original's and its
    # logits ARE the weighted-sum gather of the original's (loss 0), but not their max (the runtime map's reduce)
    source = DeltaModel.create(vocabulary_of=char_tok, layers=1, d_model=32, heads=4, seed=7)
    with torch.no_grad():
        source.model.get_output_embeddings().weight.mul_(30.0)
    moved, token_map = transplant(source, tokenizer, mode="one-to-many")
    t_id = tokenizer("T").input_ids
    assert len(t_id) == len(char_tok("T").input_ids) == 1 and token_map.match[t_id[0]] == 1
    first_loss = {reduce: distill(moved, source, token_map, ["T"], DistillConfig(
        steps=1, lr=1e-12, batch_size=1, target_reduce=reduce)).losses[0] for reduce in ("weighted_sum", None)}
    assert first_loss["weighted_sum"] < 1e-9 < 1e-4 < first_loss[None]


def test_trainable_vocab_leaves_the_blocks_alone(tokenizer, char_tok):
    source, moved, token_map = pair(tokenizer, char_tok, seed=4)
    blocks = {k: v.clone() for k, v in moved.model.state_dict().items() if "layers" in k}
    embed = moved.model.get_input_embeddings().weight.detach().clone()
    distill(moved, source, token_map, TEXTS, DistillConfig(steps=3, lr=1e-2, trainable="vocab"))
    assert all(torch.equal(v, moved.model.state_dict()[k]) for k, v in blocks.items())
    assert not torch.equal(embed, moved.model.get_input_embeddings().weight)
    assert defined_rows(token_map).sum() < token_map.user_rows + 1
