"""DeltaModel artefact: create in a template's vocabulary, save/load round trip, low-rank init, error paths."""

import json
from types import SimpleNamespace

import pytest
import torch

from crossmodel.steer.delta import CONFIG_NAME, DeltaConfig, DeltaModel, low_rank_embeddings


def test_create_matches_template_logits_width(bpe_user):
    delta = DeltaModel.create(vocabulary_of=bpe_user, layers=1, d_model=32, heads=2)
    ids = bpe_user.tokenizer("steer me", return_tensors="pt").input_ids
    assert delta.model(ids).logits.shape[-1] == bpe_user.model(ids).logits.shape[-1]
    assert delta.config.vocab_fingerprint == delta.config.template_fingerprint != ""
    assert delta.config.architecture["layers"] == 1


def test_create_is_seeded_and_leaves_global_rng(bpe_tok):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = DeltaModel.create(vocabulary_of=bpe_tok, layers=1, d_model=32, heads=2, seed=5)
    assert torch.equal(torch.rand(1), before)  # create() did not consume the caller's RNG
    b = DeltaModel.create(vocabulary_of=bpe_tok, layers=1, d_model=32, heads=2, seed=5)
    c = DeltaModel.create(vocabulary_of=bpe_tok, layers=1, d_model=32, heads=2, seed=6)
    wa, wb, wc = (d.model.get_input_embeddings().weight for d in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_save_load_round_trip(tmp_path, bpe_user):
    delta = DeltaModel.create(vocabulary_of=bpe_user, layers=1, d_model=32, heads=2, rule="normalize", alpha=0.5)
    delta.save(tmp_path / "d")
    files = {p.name for p in (tmp_path / "d").iterdir()}
    assert {CONFIG_NAME, "config.json", "model.safetensors", "tokenizer.json"} <= files
    assert not any(f.endswith((".pt", ".pkl", ".bin")) for f in files)
    raw = json.loads((tmp_path / "d" / CONFIG_NAME).read_text())
    assert list(raw) == sorted(raw) and raw["schema_version"] == 1 and raw["rule"] == "normalize"
    loaded = DeltaModel.load(tmp_path / "d")
    assert loaded.config == delta.config
    for (name, p), (_, q) in zip(delta.model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(p, q), name
    text = "a round trip"
    assert loaded.tokenizer(text).input_ids == delta.tokenizer(text).input_ids


def test_low_rank_init_keeps_template_geometry(bpe_user):
    delta = DeltaModel.create(vocabulary_of=bpe_user, layers=1, d_model=16, heads=2, init_from="template")
    emb = delta.model.get_input_embeddings().weight.detach()
    template = bpe_user.model.get_input_embeddings().weight.detach()
    # distances between rows should correlate with the template's (PCA keeps the main directions)
    d_delta = torch.pdist(emb[:100]).flatten()
    d_template = torch.pdist(template[:100] - template.mean(0)).flatten()
    corr = torch.corrcoef(torch.stack([d_delta, d_template]))[0, 1]
    assert corr > 0.5
    fresh = DeltaModel.create(vocabulary_of=bpe_user, layers=1, d_model=16, heads=2)
    d_fresh = torch.pdist(fresh.model.get_input_embeddings().weight.detach()[:100]).flatten()
    assert torch.corrcoef(torch.stack([d_fresh, d_template]))[0, 1] < corr


def test_zero_start_delta_leaves_the_template_distribution(bpe_user):
    ids = bpe_user.tokenizer("steer me gently", return_tensors="pt").input_ids
    delta = DeltaModel.create(vocabulary_of=bpe_user, layers=1, d_model=16, heads=2, zero_start=True)
    assert torch.count_nonzero(delta.model(ids).logits) == 0
    assert delta.config.architecture["zero_start"] is True
    assert torch.count_nonzero(delta.model.get_input_embeddings().weight) > 0  # only the output scale is zero
    random = DeltaModel.create(vocabulary_of=bpe_user, layers=1, d_model=16, heads=2)
    assert random.model(ids).logits.abs().mean() > 0.01 and random.config.architecture["zero_start"] is False


def test_low_rank_projection_exact_on_low_rank_matrix():
    torch.manual_seed(0)
    base = torch.randn(200, 3) @ torch.randn(3, 12)  # rank 3
    out = low_rank_embeddings(base, 3, std=0.02)
    assert out.shape == (200, 3) and abs(out.std().item() - 0.02) < 1e-4
    centred = base - base.mean(0)
    # the projection preserves all pairwise distances of a rank-3 matrix, up to the common scale
    ratio = torch.pdist(out) / torch.pdist(centred)
    assert torch.allclose(ratio, ratio.mean().expand_as(ratio), rtol=1e-3)


def test_errors(tmp_path, bpe_tok, bpe_user):
    with pytest.raises(ValueError, match="divisible"):
        DeltaModel.create(vocabulary_of=bpe_tok, d_model=30, heads=4)
    with pytest.raises(ValueError, match="init_from='template' needs"):
        DeltaModel.create(vocabulary_of=bpe_tok, d_model=16, heads=2, layers=1, init_from="template")
    with pytest.raises(ValueError, match="rule"):
        DeltaConfig(rule="mean")
    with pytest.raises(FileNotFoundError, match="not a crossmodel delta"):
        DeltaModel.load(tmp_path)
    delta = DeltaModel.create(vocabulary_of=bpe_user, layers=1, d_model=16, heads=2)
    delta.save(tmp_path / "d")
    raw = json.loads((tmp_path / "d" / CONFIG_NAME).read_text())
    (tmp_path / "d" / CONFIG_NAME).write_text(json.dumps({**raw, "flavour": "mint"}))
    with pytest.warns(UserWarning, match="flavour"):
        DeltaModel.load(tmp_path / "d")
    (tmp_path / "d" / CONFIG_NAME).write_text(json.dumps({**raw, "schema_version": 99}))
    with pytest.raises(ValueError, match="schema_version 99"):
        DeltaModel.load(tmp_path / "d")
    (tmp_path / "d" / CONFIG_NAME).write_text(json.dumps({**raw, "vocab_fingerprint": "0" * 64}))
    with pytest.raises(ValueError, match="fingerprint"):
        DeltaModel.load(tmp_path / "d")


def test_create_from_plain_namespace_requires_model_and_tokenizer():
    with pytest.raises(ValueError, match="vocabulary_of"):
        DeltaModel.create(vocabulary_of=SimpleNamespace(model=None, tokenizer=None))


def test_delta_entries_are_delta_specs_and_steer_takes_specs_and_tuples(char_user, char_delta):
    from crossmodel.steer import DeltaSpec, delta_entries, steer

    assert delta_entries(["d1", "d2"], [0.5], ["-", "m"]) == [DeltaSpec("d1", 0.5, None), DeltaSpec("d2", 0.5, "m")]
    as_spec = steer(char_user, deltas=[DeltaSpec(char_delta, 0.25)]).generate(["Hello"], 6)
    as_tuple = steer(char_user, deltas=[(char_delta, 0.25, None)]).generate(["Hello"], 6)
    assert as_spec == as_tuple


def test_steer_takes_a_bare_hf_model_with_its_tokenizer(char_user, char_delta):
    from crossmodel.steer import steer

    bare = steer(char_user.model, tokenizer=char_user.tokenizer, deltas=[(char_delta, 1.0, None)])
    assert bare.model is char_user.model  # not the Llama trunk behind `.model`
    assert bare.generate(["Hello"], 6) == steer(char_user, deltas=[(char_delta, 1.0, None)]).generate(["Hello"], 6)
