"""Transplant: a delta rebuilt in another vocabulary (rows = weighted source rows, blocks copied), its artefact,
its use as an ordinary same-vocabulary delta, and the error paths."""

import copy
import json
import shutil

import pytest
import torch

from crossmodel.steer import DeltaModel, steer
from crossmodel.steer.delta import CONFIG_NAME
from crossmodel.steer.factored import vocab_matrices
from crossmodel.steer.transplant import (MAP_DIR, ROW_COMBINED, ROW_EXACT, ROW_UNMAPPED, provenance,
                                         save_transplant, transplant, transplant_weights, weights_digest)
from crossmodel.vocab import TokenMap


def _delta(tokenizer, tie=True, seed=3):
    delta = DeltaModel.create(vocabulary_of=tokenizer, layers=2, d_model=32, heads=4, tie_embeddings=tie, seed=seed)
    with torch.no_grad():  # untrained deltas have near-zero logits; make rows distinguishable
        delta.model.get_output_embeddings().weight.mul_(30.0)
    return delta


def _hand_map(user_rows=4, delta_rows=5, **csr):
    ids = torch.tensor([2, 0, -1, 4][:user_rows])
    return TokenMap(ids=ids, match=torch.tensor([1, 0, 0, 0], dtype=torch.uint8), mode="one-to-many",
                    user_fingerprint="u", delta_fingerprint="d", user_rows=user_rows, delta_rows=delta_rows, **csr)


def test_transplant_weights_combines_copies_and_flags():
    source = torch.arange(10.0).reshape(5, 2)  # row r = (2r, 2r+1)
    csr = dict(indptr=torch.tensor([0, 1, 3, 3, 5]), indices=torch.tensor([2, 0, 1, 4, 3]),
               weights=torch.tensor([1.0, 0.75, 0.25, 2.0, 2.0]))  # row 3's weights get normalised to 1/2 each
    rows, origin = transplant_weights(source, _hand_map(**csr))
    assert torch.equal(rows[0], source[2])  # exact match: copied
    assert torch.allclose(rows[1], 0.75 * source[0] + 0.25 * source[1])
    assert torch.allclose(rows[2], source.mean(0))  # no entry: the mean row
    assert torch.allclose(rows[3], (source[4] + source[3]) / 2)
    assert origin.tolist() == [ROW_EXACT, ROW_COMBINED, ROW_UNMAPPED, ROW_COMBINED]


def test_transplant_weights_single_id_map_and_width_check():
    source = torch.randn(5, 3)
    rows, origin = transplant_weights(source, _hand_map())
    assert torch.equal(rows[1], source[0]) and torch.equal(rows[3], source[4])  # one id per row: that row
    assert torch.allclose(rows[2], source.mean(0)) and origin[2] == ROW_UNMAPPED
    with pytest.raises(ValueError, match="delta_rows=5"):
        transplant_weights(torch.randn(6, 3), _hand_map())


@pytest.mark.parametrize("layout", ["factored", "dense"])
def test_round_trip_own_vocabulary_gives_identical_logits(bpe_tok, layout):
    delta = _delta(bpe_tok)
    moved, token_map = transplant(delta, bpe_tok, layout=layout)
    assert token_map.mode == "identity"
    ids = bpe_tok(["A delta model steers a large language model."], return_tensors="pt").input_ids
    assert torch.equal(moved.model(ids).logits, delta.model(ids).logits)
    record = provenance(moved.config)
    assert record["rows"] == {"exact": len(bpe_tok), "combined": 0, "unmapped_mean": 0}
    assert record["source_weights_sha256"] == weights_digest(delta.model)


@pytest.mark.parametrize("tie", [True, False])
def test_cross_vocabulary_exact_rows_reproduce_the_source(bpe_tok, char_tok, tie):
    delta = _delta(bpe_tok, tie=tie)
    moved, token_map = transplant(delta, char_tok, mode="one-to-many")
    assert moved.rows == len(char_tok) and moved.config.vocab_fingerprint != delta.config.vocab_fingerprint
    # "<s> T": BOS maps by role and "T" exists in both vocabularies, so the transplanted delta reads the same
    # embeddings through the same blocks and its logits on exact rows equal the source's on the mapped rows
    s_ids, t_ids = bpe_tok(["T"], return_tensors="pt").input_ids, char_tok(["T"], return_tensors="pt").input_ids
    assert s_ids.shape == t_ids.shape == (1, 2)
    exact = ((token_map.match == 1) & (token_map.ids >= 0)).nonzero().flatten()
    assert len(exact) > 50
    source_z, moved_z = delta.model(s_ids).logits[0, -1], moved.model(t_ids).logits[0, -1]
    assert torch.allclose(moved_z[exact], source_z[token_map.ids[exact]], atol=1e-5)
    for name, p in delta.model.named_parameters():  # the blocks are copied unchanged
        if "embed" not in name and "lm_head" not in name:
            assert torch.equal(p, dict(moved.model.named_parameters())[name]), name


@pytest.mark.parametrize("tie", [True, False])
def test_factored_and_dense_layouts_give_the_same_delta(bpe_tok, char_tok, tie):
    delta = _delta(bpe_tok, tie=tie)
    factored, token_map = transplant(delta, char_tok)
    dense, _ = transplant(delta, char_tok, token_map=token_map, layout="dense")
    assert factored.config.architecture["layout"] == "factored" and factored.rows == dense.rows == len(char_tok)
    # the factored delta keeps the source's parameters: its rows are combined through the map on the fly
    assert sum(p.numel() for p in factored.model.parameters()) == sum(p.numel() for p in delta.model.parameters())
    assert dense.model.get_input_embeddings().weight.shape[0] == len(char_tok) != len(bpe_tok)
    assert all(torch.equal(a, b) for a, b in zip(vocab_matrices(factored.model), vocab_matrices(dense.model))
               if a is not None)
    ids = char_tok(["Tokenizers split text.", "A delta"], return_tensors="pt", padding=True)
    assert torch.allclose(factored.model(**ids).logits, dense.model(**ids).logits, atol=1e-4)


@pytest.mark.parametrize("layout", ["factored", "dense"])
def test_target_special_ids_beyond_the_source_rows(bpe_tok, char_tok, layout):
    target = copy.deepcopy(bpe_tok)  # like Qwen (pad 151643) <- a SmolLM2-vocabulary delta (49,152 rows)
    target.pad_token = target.convert_ids_to_tokens(len(target) - 1)
    assert target.pad_token_id >= len(char_tok)
    moved, _ = transplant(_delta(char_tok), target, layout=layout)
    assert moved.rows == len(target) and torch.isfinite(moved.model(target(["fox"], return_tensors="pt").input_ids)
                                                         .logits).all()


def test_a_transplant_of_a_factored_transplant(bpe_tok, char_tok):
    there, _ = transplant(_delta(bpe_tok), char_tok)  # factored
    back, token_map = transplant(there, bpe_tok)  # factored over the dense rows of `there`
    back_dense, _ = transplant(there, bpe_tok, token_map=token_map, layout="dense")
    assert back.rows == len(bpe_tok) and provenance(back.config)["source_provenance"]["target_rows"] == len(char_tok)
    ids = bpe_tok(["The quick brown fox"], return_tensors="pt").input_ids
    assert torch.allclose(back.model(ids).logits, back_dense.model(ids).logits, atol=1e-4)


def test_transplanted_delta_steers_without_a_map(bpe_tok, char_user):
    moved, _ = transplant(_delta(bpe_tok), char_user)
    with pytest.raises(ValueError, match="crossmodel map"):
        steer(char_user, deltas=[(_delta(bpe_tok), 1.0, None)])  # the source delta needs a map
    s = steer(char_user, deltas=[(moved, 1.0, None)])
    assert s.slots[0].sync == "same"  # an ordinary same-vocabulary delta: no re-encoding
    plain = steer(char_user, deltas=[])
    lp, lp0 = s.score(["The quick"], [" brown fox"]), plain.score(["The quick"], [" brown fox"])
    assert lp[0].shape == lp0[0].shape and not torch.allclose(lp[0], lp0[0])
    assert len(s.generate(["Once upon"], max_new_tokens=4)) == 1


def test_both_layouts_steer_alike(bpe_tok, char_user):
    delta = _delta(bpe_tok)
    factored, token_map = transplant(delta, char_user)
    dense, _ = transplant(delta, char_user, token_map=token_map, layout="dense")
    with_f, with_d = steer(char_user, deltas=[(factored, 1.0, None)]), steer(char_user, deltas=[(dense, 1.0, None)])
    prompts, answers = ["The quick", "Once upon a"], [" brown fox", " time"]
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(with_f.score(prompts, answers),
                                                                 with_d.score(prompts, answers)))
    assert with_f.generate(prompts, max_new_tokens=6) == with_d.generate(prompts, max_new_tokens=6)


def test_save_load_records_provenance_and_map(tmp_path, bpe_tok, char_tok):
    delta = _delta(bpe_tok)
    delta.save(tmp_path / "src")
    moved, token_map = transplant(tmp_path / "src", char_tok, mode="normalized")
    save_transplant(moved, token_map, tmp_path / "out")
    raw = json.loads((tmp_path / "out" / CONFIG_NAME).read_text())
    loaded = DeltaModel.load(tmp_path / "out")
    record = provenance(loaded.config)
    assert record["source"] == str(tmp_path / "src") and record["map"]["mode"] == "normalized"
    assert record["source_vocab_fingerprint"] == delta.config.vocab_fingerprint
    assert raw["vocab_fingerprint"] == loaded.config.vocab_fingerprint != delta.config.vocab_fingerprint
    saved_map = TokenMap.load(tmp_path / "out" / MAP_DIR, user=char_tok, delta=bpe_tok)
    assert torch.equal(saved_map.ids, token_map.ids)
    ids = char_tok(["steer"], return_tensors="pt").input_ids
    assert torch.equal(loaded.model(ids).logits, moved.model(ids).logits)
    assert not any(p.suffix in (".pt", ".pkl", ".bin") for p in (tmp_path / "out").rglob("*"))


def test_factored_artefact_stores_the_source_rows_and_needs_its_map(tmp_path, bpe_tok, char_tok):
    from safetensors import safe_open

    delta = _delta(bpe_tok, tie=False)
    moved, token_map = transplant(delta, char_tok)
    moved.save(tmp_path / "out")  # DeltaModel.save writes a factored delta's map itself
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as f:
        shapes = {name: f.get_slice(name).get_shape() for name in f.keys()}
    assert shapes["model.embed_tokens.weight"][0] == shapes["lm_head.weight"][0] == len(bpe_tok)  # source rows
    loaded = DeltaModel.load(tmp_path / "out")
    assert loaded.rows == len(char_tok) and loaded.config.architecture["layout"] == "factored"
    ids = char_tok(["steer it"], return_tensors="pt").input_ids
    assert torch.equal(loaded.model(ids).logits, moved.model(ids).logits)
    shutil.rmtree(tmp_path / "out" / MAP_DIR)
    with pytest.raises(FileNotFoundError, match=MAP_DIR):
        DeltaModel.load(tmp_path / "out")
    token_map.user_fingerprint = "0" * 64
    token_map.save(tmp_path / "out" / MAP_DIR)
    with pytest.raises(ValueError, match="map was replaced"):
        DeltaModel.load(tmp_path / "out")


def test_wrong_map_and_bad_target_are_refused(bpe_tok, char_tok):
    delta = _delta(bpe_tok)
    wrong = TokenMap.build(bpe_tok, char_tok, mode="normalized")  # built the other way round
    with pytest.raises(ValueError, match="crossmodel map"):
        transplant(delta, char_tok, token_map=wrong)
    other_width = TokenMap.build(char_tok, bpe_tok, mode="normalized", user_rows=len(char_tok) + 3)
    with pytest.raises(ValueError, match="widths"):
        transplant(delta, char_tok, token_map=other_width)
    with pytest.raises(ValueError, match="model spec"):
        transplant(delta, 42)
    with pytest.raises(ValueError, match="layout='sparse'; choose one of"):
        transplant(delta, char_tok, layout="sparse")


@pytest.mark.slow
def test_real_pair_gemma_from_smollm2_vocabulary():
    from crossmodel.models import load_model, load_tokenizer

    smol, _ = load_tokenizer("smollm2-135m-instruct")
    source = DeltaModel.create(vocabulary_of=smol, layers=1, d_model=64, heads=4, seed=0)
    same, _ = transplant(source, "smollm2-135m-instruct")  # round trip through the zoo spec
    ids = smol(["Bettina Quenneville was born in Sapporo."], return_tensors="pt").input_ids
    assert torch.equal(same.model(ids).logits, source.model(ids).logits)
    gemma = load_model("gemma-3-270m")
    moved, token_map = transplant(source, gemma, mode="one-to-many")
    record = provenance(moved.config)
    assert moved.rows == 262144 and sum(record["rows"].values()) == 262144
    assert record["rows"]["exact"] > 10000 and moved.config.vocab_fingerprint == gemma.fingerprint
    dense, _ = transplant(source, gemma, token_map=token_map, layout="dense")
    g_ids = gemma.tokenizer(["Bettina Quenneville was born in Sapporo."], return_tensors="pt").input_ids
    assert torch.allclose(moved.model(g_ids).logits, dense.model(g_ids).logits, atol=1e-4)
    lp = steer(gemma, deltas=[(moved, 1.0, None)]).score(["The capital of France is"], [" Paris"])
    assert torch.isfinite(lp[0]).all()
