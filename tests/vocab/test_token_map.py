"""The TokenMap artefact: batched gather, identity = direct addition, save/load round trip, fingerprint checks."""

import json

import pytest
import torch
from .vocab_fixtures import byte_level_vocab

from crossmodel.vocab import Family, TokenMap, Vocabulary, export_reference, import_reference
from crossmodel.vocab.token_map import META_FILE, TENSORS_FILE


@pytest.fixture
def small_map():
    user = Vocabulary.from_tokens(["a", "b", "c", "zz"], Family.OTHER)
    delta = Vocabulary.from_tokens(["c", "a", "x"], Family.OTHER)
    return user, delta, TokenMap.build(user, delta, mode="cmc", user_rows=6)  # a->1, b->-1, c->0, zz->-1


def test_gather_is_batched_with_fill_and_extra_user_rows(small_map):
    _, _, tmap = small_map
    assert tmap.ids.tolist() == [1, -1, 0, -1, -1, -1]
    torch.manual_seed(0)
    z = torch.randn(2, 3, 3)
    out = tmap.gather(z, fill=-7.0)
    assert out.shape == (2, 3, 6)
    torch.testing.assert_close(out[..., 0], z[..., 1])
    torch.testing.assert_close(out[..., 2], z[..., 0])
    assert (out[..., [1, 3, 4, 5]] == -7.0).all()
    assert (tmap.gather(z)[..., 1] == 0).all()  # the reference's fill


def test_gather_rejects_logits_of_the_wrong_width(small_map):
    with pytest.raises(ValueError, match="delta_rows=3"):
        small_map[2].gather(torch.zeros(2, 4))


def test_identity_map_equals_direct_addition():
    vocab = byte_level_vocab()
    torch.manual_seed(0)
    z = torch.randn(2, 5, 300)
    tmap = TokenMap.identity(vocab, rows=300)  # model rows beyond the tokenizer size map to themselves
    assert torch.equal(tmap.gather(z), z)
    narrower = TokenMap.identity(vocab, rows=300, delta_rows=290)
    assert torch.equal(narrower.gather(z[..., :290])[..., :290], z[..., :290])
    assert (narrower.gather(z[..., :290])[..., 290:] == 0).all()


def test_save_load_round_trip(tmp_path, small_map):
    user, delta, tmap = small_map
    tmap.save(tmp_path / "map")
    files = sorted(p.name for p in (tmp_path / "map").iterdir())
    assert files == [META_FILE, TENSORS_FILE]  # no .pt / .pkl
    meta = json.loads((tmp_path / "map" / META_FILE).read_text())
    assert meta["mode"] == "cmc" and meta["user_rows"] == 6 and meta["coverage"]["unmapped"] == 2
    loaded = TokenMap.load(tmp_path / "map", user=user, delta=delta)
    assert torch.equal(loaded.ids, tmap.ids) and torch.equal(loaded.match, tmap.match)
    assert torch.equal(loaded.distance, tmap.distance) and loaded.coverage() == tmap.coverage()


def test_load_against_other_tokenizers_names_the_side(tmp_path, small_map):
    user, delta, tmap = small_map
    tmap.save(tmp_path / "map")
    with pytest.raises(ValueError, match="the delta tokenizer .*`crossmodel map"):
        TokenMap.load(tmp_path / "map", user=user, delta=user)
    with pytest.raises(ValueError, match="the user tokenizer"):
        tmap.verify(user=delta)


def test_load_errors_missing_files_schema_and_unknown_keys(tmp_path, small_map):
    with pytest.raises(FileNotFoundError, match="token_map.json"):
        TokenMap.load(tmp_path)
    tmap = small_map[2]
    tmap.save(tmp_path / "map")
    meta_path = tmp_path / "map" / META_FILE
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "surprise": 1}))
    with pytest.warns(UserWarning, match="surprise"):
        TokenMap.load(tmp_path / "map")
    meta_path.write_text(json.dumps({**meta, "schema_version": 99}))
    with pytest.raises(ValueError, match="schema_version"):
        TokenMap.load(tmp_path / "map")


def test_unknown_mode_lists_the_modes(small_map):
    user, delta, _ = small_map
    with pytest.raises(ValueError, match="one-to-many"):
        TokenMap.build(user, delta, mode="fuzzy")


def test_reference_triple_round_trip(tmp_path, small_map):
    user, delta, tmap = small_map
    paths = export_reference(tmap, tmp_path / "ref" / "u2d", user, delta)
    assert json.loads(paths["id"].read_text()) == [1, -1, 0, -1]
    assert json.loads(paths["token"].read_text())[0] == ["a", "a"]
    back = import_reference(tmp_path / "ref" / "u2d", user, delta, user_rows=6)
    assert torch.equal(back.ids, tmap.ids) and torch.equal(back.match, tmap.match)
    with pytest.raises(ValueError, match="other tokenizers"):
        import_reference(tmp_path / "ref" / "u2d", user, Vocabulary.from_tokens(["a", "c", "x"], Family.OTHER))
    with pytest.raises(FileNotFoundError, match="PREFIX"):
        import_reference(tmp_path / "ref" / "missing", user, delta)


def test_gather_keeps_dtype_and_passes_gradients(small_map):
    tmap = small_map[2]
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    out = tmap.gather(z, fill=float("-inf"))
    assert out.dtype == torch.float64 and torch.isinf(out[:, 1]).all()
    out[:, [0, 2]].sum().backward()
    assert z.grad[:, :2].eq(1).all() and z.grad[:, 2].eq(0).all()  # delta rows 1 and 0 feed user rows 0 and 2


def test_padded_pieces_of_a_one_to_many_map():
    csr = dict(indptr=torch.tensor([0, 1, 3, 3]), indices=torch.tensor([2, 0, 1]),
               weights=torch.tensor([1.0, 0.75, 0.25]))
    many = TokenMap(ids=torch.tensor([2, 0, -1]), match=torch.tensor([1, 0, 0], dtype=torch.uint8),
                    mode="one-to-many", user_fingerprint="u", delta_fingerprint="d", user_rows=3, delta_rows=4, **csr)
    ids, weights = many.padded_pieces()
    assert ids.tolist() == [[2, 2], [0, 1], [0, 0]] and weights.tolist() == [[1.0, 0.0], [0.75, 0.25], [0.0, 0.0]]
    single = TokenMap(ids=torch.tensor([2, 0, -1]), match=torch.tensor([1, 0, 0], dtype=torch.uint8),
                      mode="cmc", user_fingerprint="u", delta_fingerprint="d", user_rows=3, delta_rows=4)
    with pytest.raises(ValueError, match="one-to-many"):
        single.padded_pieces()
