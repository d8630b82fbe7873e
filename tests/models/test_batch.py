"""The one pad-id rule and the one padding function every stage batches with."""

from types import SimpleNamespace

import pytest
import torch

from crossmodel.models.batch import pad_id, pad_rows


def test_pad_id_takes_pad_then_eos_then_zero_and_keeps_id_zero():
    assert pad_id(SimpleNamespace(pad_token_id=0, eos_token_id=5)) == 0  # id 0 is a real pad id, not "missing"
    assert pad_id(SimpleNamespace(pad_token_id=None, eos_token_id=5)) == 5
    assert pad_id(SimpleNamespace(pad_token_id=None, eos_token_id=None)) == 0


def test_pad_rows_left_and_right():
    ids, mask = pad_rows([[1, 2, 3], [4]], 9, side="left")
    assert ids.tolist() == [[1, 2, 3], [9, 9, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_rows([[1, 2, 3], [4], []], 9)
    assert ids.tolist() == [[1, 2, 3], [4, 9, 9], [9, 9, 9]] and mask.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert ids.dtype == mask.dtype == torch.long
    with pytest.raises(ValueError, match="side"):
        pad_rows([[1]], 0, side="middle")


def test_context_length_reads_the_text_config_and_check_context_names_the_limit():
    from transformers import Gemma3Config

    from crossmodel.models.batch import ContextTooLong, check_context, context_length

    gemma_like = SimpleNamespace(config=Gemma3Config(text_config={"max_position_embeddings": 321}))
    assert context_length(gemma_like) == 321  # a multimodal config keeps it on its text config
    assert context_length(SimpleNamespace(config=SimpleNamespace(n_positions=64))) == 64
    assert context_length(SimpleNamespace(config=SimpleNamespace())) is None
    check_context(gemma_like, [300, 10], 21, "user model")  # exactly fits
    with pytest.raises(ContextTooLong, match="prompt 0 is 300 tokens for the user model.*context of 321"):
        check_context(gemma_like, [300, 10], 22, "user model")
