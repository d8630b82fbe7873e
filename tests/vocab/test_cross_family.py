"""`normalized` mode: maps compare the bytes tokens stand for; special tokens only map to special tokens."""

import pytest
from .vocab_fixtures import byte_level_vocab, sentencepiece_vocab

from crossmodel.vocab import Family, TokenMap, Vocabulary, token_bytes


def mapped_pairs(tmap, user, delta):
    return {user.tokens[u]: delta.tokens[d] for u, d in enumerate(tmap.ids.tolist()) if d >= 0}


def assert_cross_family_invariants(tmap, user, delta):
    ids = tmap.ids.tolist()
    delta_bytes = {token_bytes(t, delta.family) for i, t in enumerate(delta.tokens) if i not in delta.special_ids}
    for u, tok in enumerate(user.tokens):
        if u in user.special_ids or u in user.added:
            continue
        form = token_bytes(tok, user.family)
        if len(form) == 1 and form in delta_bytes:  # every single-byte token maps to the token of the same byte
            assert ids[u] >= 0, tok
            assert token_bytes(delta.tokens[ids[u]], delta.family) == form, (tok, delta.tokens[ids[u]])
        elif len(form) == 1 and ids[u] >= 0:  # a byte the delta lacks (SmolLM2 has no 0xC0): nothing or a token
            assert token_bytes(delta.tokens[ids[u]], delta.family).startswith(form)  # starting with that byte
    for u in user.special_ids:  # no special token maps to an ordinary text token
        assert ids[u] < 0 or ids[u] in delta.special_ids or ids[u] in delta.added


@pytest.mark.parametrize("direction", ["sp->bl", "bl->sp"])
def test_single_bytes_specials_and_markers_map_across_families(sp_vocab, bl_vocab, direction):
    user, delta = (sp_vocab, bl_vocab) if direction == "sp->bl" else (bl_vocab, sp_vocab)
    tmap = TokenMap.build(user, delta, mode="normalized")
    assert_cross_family_invariants(tmap, user, delta)
    pairs = mapped_pairs(tmap, user, delta)
    if direction == "sp->bl":
        assert pairs["▁"] == "Ġ" and pairs["<0x0A>"] == "Ċ" and pairs["▁the"] == "Ġthe" and pairs["▁▁"] == "ĠĠ"
        assert pairs["<s>"] == "<|endoftext|>" and pairs["</s>"] == "<|endoftext|>"  # bos / eos by role
        assert "<unk>" not in pairs  # the byte-level side has no unk
    else:
        assert pairs["Ġ"] == "▁" and pairs["Ċ"] == "<0x0A>" and pairs["Ġthe"] == "▁the"
        assert pairs["ĊĊ"] == "<0x0A>"  # nearest prefix on bytes


def test_a_regular_piece_beats_a_byte_token_on_collisions(sp_vocab, bl_vocab):
    pairs = mapped_pairs(TokenMap.build(bl_vocab, sp_vocab, mode="normalized"), bl_vocab, sp_vocab)
    assert pairs["a"] == "a" and pairs["b"] == "b"  # not <0x61> / <0x62>
    assert pairs["d"] == "<0x64>"  # no regular "d": the byte token


def test_special_tokens_match_by_exact_content_when_no_role():
    user = Vocabulary.from_tokens(["<tool>", "x", "<pad>"], Family.OTHER, special_ids={0, 2})
    delta = Vocabulary.from_tokens(["x", "<tool>", "<tool>x"], Family.OTHER, special_ids={1})
    assert TokenMap.build(user, delta, mode="normalized").ids.tolist() == [1, 0, -1]


def test_added_non_special_tokens_match_only_their_exact_bytes():
    user = Vocabulary.from_tokens(["<unused0>", "\n", "a"], Family.OTHER, added={0: "<unused0>", 1: "\n"})
    delta = byte_level_vocab()
    pairs = mapped_pairs(TokenMap.build(user, delta, mode="normalized"), user, delta)
    assert pairs == {"\n": "Ċ", "a": "a"}


def test_fallback_for_tokens_without_prefix_candidates():
    user = sentencepiece_vocab(extra=("▁q", "▁the"))
    delta = Vocabulary.from_tokens(["<unk>", "▁", "q", "▁the"], Family.SENTENCEPIECE, special={"unk": 0},
                                   special_ids={0})
    row = user.tokens.index("▁q")
    assert TokenMap.build(user, delta, mode="normalized").ids[row] == -1  # bare space is no candidate
    assert TokenMap.build(user, delta, mode="normalized", fallback="first_byte").ids[row] == 1
    assert TokenMap.build(user, delta, mode="normalized", fallback="unk").ids[row] == 0
    with pytest.raises(ValueError, match="fallback"):
        TokenMap.build(user, delta, mode="normalized", fallback="nearest")


def test_extension_rows_mark_user_tokens_longer_than_their_delta_token(tmp_path):
    """"▁the" -> "Ġthe" is exact, "▁them" -> "Ġthe" extends it (one more byte), "▁t" -> "Ġthe" is shorter (a
    prefix of the delta token: the delta's logit licenses it); the map records only the extension, keeps it when
    saved, and a map saved without it gets it back from the two tokenizers."""
    import torch

    user = sentencepiece_vocab(extra=("▁the", "▁them", "▁t", "▁a"))
    delta = byte_level_vocab(extra=("Ġthe", "Ġa"))
    tmap = TokenMap.build(user, delta, mode="normalized")
    row = {t: i for i, t in enumerate(user.tokens)}
    pairs = mapped_pairs(tmap, user, delta)
    assert pairs["▁them"] == pairs["▁the"] == pairs["▁t"] == "Ġthe"
    assert [int(tmap.extends[row[t]]) for t in ("▁the", "▁them", "▁t", "▁a")] == [0, 1, 0, 0]
    assert tmap.coverage()["extends"] == int(tmap.extends.sum()) >= 1
    logits = torch.randn(2, len(delta.tokens))
    plain, penalised = tmap.gather(logits), tmap.gather(logits, extension_penalty=2.0)
    assert torch.equal(plain - penalised, 2.0 * tmap.extends.float().expand_as(plain))
    loaded = TokenMap.load(tmap.save(tmp_path / "map"))
    assert torch.equal(loaded.extends, tmap.extends)
    loaded.extends = None  # as a map saved before `extends` existed
    assert torch.equal(loaded.with_extensions(user, delta).extends, tmap.extends)
