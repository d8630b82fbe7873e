"""`one-to-many` mode: a user token maps to the delta pieces of its bytes, reduced at gather time."""

import pytest
import torch

from crossmodel.vocab import Family, TokenMap, Vocabulary


@pytest.fixture
def maps():
    user = Vocabulary.from_tokens(["<s>", "▁unbe", "▁un", "zq"], Family.SENTENCEPIECE, special={"bos": 0},
                                  special_ids={0})
    delta = Vocabulary.from_tokens(["Ġun", "be", "b", "e", "<|bos|>"], Family.BYTE_LEVEL, special={"bos": 4},
                                   special_ids={4})
    return user, delta, TokenMap.build(user, delta, mode="one-to-many", decay=0.5)


def pieces(tmap, row):
    a, b = tmap.indptr[row].item(), tmap.indptr[row + 1].item()
    return tmap.indices[a:b].tolist(), tmap.weights[a:b].tolist()


def test_pieces_and_weights(maps):
    _, _, tmap = maps
    assert pieces(tmap, 0) == ([4], [1.0])  # bos by role
    assert pieces(tmap, 1)[0] == [0, 1]  # "▁unbe" = "Ġun" + "be" (greedy longest match)
    assert pieces(tmap, 1)[1] == pytest.approx([2 / 3, 1 / 3])
    assert pieces(tmap, 2) == ([0], [1.0])
    assert pieces(tmap, 3) == ([], [])  # "z" has no delta piece
    assert tmap.match.tolist() == [1, 0, 1, 0] and tmap.ids.tolist() == [4, 0, 0, -1]


def test_gather_reductions(maps):
    _, _, tmap = maps
    torch.manual_seed(0)
    z = torch.randn(3, 2, 5)
    lse = torch.logsumexp(torch.stack([z[..., 0] + torch.log(torch.tensor(2 / 3)),
                                       z[..., 1] + torch.log(torch.tensor(1 / 3))]), 0)
    expected = {"max": torch.maximum(z[..., 0], z[..., 1]), "logsumexp": lse,
                "weighted_sum": z[..., 0] * 2 / 3 + z[..., 1] / 3}
    for reduce, row1 in expected.items():
        out = tmap.gather(z, fill=-1.0, reduce=reduce)
        assert out.shape == (3, 2, 4)
        torch.testing.assert_close(out[..., 1], row1)
        torch.testing.assert_close(out[..., 0], z[..., 4])
        torch.testing.assert_close(out[..., 2], z[..., 0])
        assert (out[..., 3] == -1.0).all()
    with pytest.raises(ValueError, match="reduce"):
        tmap.gather(z, reduce="mean")


def test_round_trip_keeps_the_pieces(tmp_path, maps):
    user, delta, tmap = maps
    tmap.save(tmp_path / "m")
    loaded = TokenMap.load(tmp_path / "m", user=user, delta=delta)
    z = torch.randn(4, 5)
    assert torch.equal(loaded.gather(z, reduce="weighted_sum"), tmap.gather(z, reduce="weighted_sum"))
    assert loaded.options["reduce"] == "max"


def test_max_pieces_and_decay_validation(maps):
    user, delta, _ = maps
    one = TokenMap.build(user, delta, mode="one-to-many", max_pieces=1)
    assert pieces(one, 1) == ([0], [1.0])
    with pytest.raises(ValueError, match="decay"):
        TokenMap.build(user, delta, mode="one-to-many", decay=0.0)
