"""The factored vocabulary layout: target rows as weighted sums of source rows, computed on the fly."""

import pytest
import torch
from torch import nn

from crossmodel.steer.factored import MappedEmbedding, MappedHead, mix_rows, factor_vocabulary, row_pieces
from crossmodel.vocab import TokenMap

CSR = dict(indptr=torch.tensor([0, 1, 3, 3, 5]), indices=torch.tensor([2, 0, 1, 4, 3]),
           weights=torch.tensor([1.0, 0.75, 0.25, 2.0, 2.0]))  # row 2 has no piece, row 3's weights sum to 4


def _map(**csr):
    return TokenMap(ids=torch.tensor([2, 0, -1, 4]), match=torch.tensor([1, 0, 0, 0], dtype=torch.uint8),
                    mode="one-to-many", user_fingerprint="u", delta_fingerprint="d", user_rows=4, delta_rows=5, **csr)


def test_row_pieces_normalise_pad_and_point_unmapped_rows_at_the_mean():
    pieces, weights = row_pieces(_map(**CSR))
    assert pieces.tolist() == [[2, 2], [0, 1], [5, 5], [4, 3]]  # padding repeats the first piece; 5 = the mean
    assert weights.tolist() == [[1.0, 0.0], [0.75, 0.25], [1.0, 0.0], [0.5, 0.5]]
    pieces, weights = row_pieces(_map())  # one id per row
    assert pieces.tolist() == [[2], [0], [5], [4]] and weights.flatten().tolist() == [1.0] * 4


def test_mix_rows_copies_single_pieces_and_averages_the_rest():
    source = torch.randn(5, 3)
    rows = mix_rows(source, *row_pieces(_map(**CSR)))
    assert torch.equal(rows[0], source[2])  # one piece of weight 1: bit for bit
    assert torch.allclose(rows[1], 0.75 * source[0] + 0.25 * source[1])
    assert torch.allclose(rows[2], source.mean(0)) and torch.allclose(rows[3], (source[3] + source[4]) / 2)


@pytest.mark.parametrize("bias", [False, True])
def test_mapped_head_and_embedding_equal_their_dense_matrices(bias):
    torch.manual_seed(0)
    pieces, weights = row_pieces(_map(**CSR))
    linear, embed = nn.Linear(6, 5, bias=bias), nn.Embedding(5, 6)
    head, mapped = MappedHead(linear, pieces, weights, None), MappedEmbedding(embed, pieces, weights, None)
    dense_w, dense_b = head.dense()
    hidden = torch.randn(2, 3, 6)
    expected = hidden @ dense_w.T + (0 if dense_b is None else dense_b)
    assert head(hidden).shape == (2, 3, 4) and torch.allclose(head(hidden), expected, atol=1e-6)
    ids = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])
    assert torch.allclose(mapped(ids), mapped.dense()[ids], atol=1e-6)
    assert torch.equal(mapped(ids)[0, 0], embed.weight[2])  # an exact row is the source row itself


def test_gradients_reach_the_shared_source_rows():
    pieces, weights = row_pieces(_map(**CSR))
    embed = nn.Embedding(5, 4)
    head = nn.Linear(4, 5, bias=False)
    head.weight = embed.weight  # tied
    mapped_in, mapped_out = MappedEmbedding(embed, pieces, weights, None), MappedHead(head, pieces, weights, None)
    mapped_out(mapped_in(torch.tensor([[1, 2]]))).logsumexp(-1).sum().backward()
    assert embed.weight.grad is not None and (embed.weight.grad.abs().sum(1) > 0).all()  # the mean row touches all


def test_factor_vocabulary_refuses_a_wrong_width_and_exotic_modules(bpe_tok):
    from crossmodel.steer import DeltaModel

    delta = DeltaModel.create(vocabulary_of=bpe_tok, layers=1, d_model=8, heads=2)
    with pytest.raises(ValueError, match="expects 5 source rows"):
        factor_vocabulary(delta.model, _map(**CSR))
    delta.model.set_output_embeddings(nn.Sequential(nn.Linear(8, 5)))
    with pytest.raises(ValueError, match="layout='dense'"):
        factor_vocabulary(delta.model, _map(**CSR))
