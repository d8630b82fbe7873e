"""PM-MinED `cmc` mode: hand-made cases for each reference quirk, and a property test against the naive loop."""

import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crossmodel.vocab import Family, TokenMap, Vocabulary, pm_mined
from crossmodel.vocab.pmmined import build_cmc_arrays


def levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def naive_reference(user_tokens, user_specials, delta_tokens):
    """The reference's nested loop, written out: every user token against every delta token."""
    ids, match = [], []
    for i, u in enumerate(user_tokens):
        if u in user_specials or (len(u) > 2 and u.startswith("<") and u.endswith(">")):
            ids.append(i), match.append(1)
            continue
        if u in delta_tokens:
            ids.append(delta_tokens.index(u)), match.append(1)
            continue
        best, best_dist = -1, None
        for j, d in enumerate(delta_tokens):
            if d == "▁" and not re.fullmatch("▁*", u):
                continue
            if u.startswith(d) or d.startswith(u):
                dist = levenshtein(u, d)
                if best_dist is None or dist < best_dist:
                    best, best_dist = j, dist
        ids.append(best), match.append(0)
    return ids, match


def vocab(tokens, special_ids=()):
    return Vocabulary.from_tokens(tokens, Family.SENTENCEPIECE, special_ids=set(special_ids))


def cmc(user_tokens, delta_tokens, special_ids=()):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ids, match, distance = build_cmc_arrays(vocab(user_tokens, special_ids), vocab(delta_tokens))
    return ids.tolist(), match.tolist(), distance.tolist()


def test_exact_match_takes_the_lowest_duplicate_id():
    ids, match, _ = cmc(["ab"], ["x", "ab", "ab"])
    assert ids == [1] and match == [1]


def test_nearest_prefix_or_extension_wins_and_ties_go_to_the_lowest_id():
    # "abc": prefix "ab" (distance 1, id 2) ties with extension "abcd" (distance 1, id 0): lowest id wins
    ids, match, distance = cmc(["abc"], ["abcd", "a", "ab"])
    assert ids == [0] and match == [0] and distance == [1]
    ids, _, distance = cmc(["abc"], ["a", "abcdef", "ab"])
    assert ids == [2] and distance == [1]


def test_bare_space_piece_is_only_a_candidate_for_all_space_tokens():
    ids, _, _ = cmc(["▁xyz", "▁▁▁"], ["▁", "q"])
    assert ids == [-1, 0]


def test_special_and_angle_tokens_keep_their_own_id():
    ids, match, _ = cmc(["<s>", "<0x0A>", "<>", "x"], ["y", "z", "<>", "<0x0A>", "x"], special_ids={0})
    assert ids == [0, 1, 2, 4] and match == [1, 1, 1, 1]


def test_added_user_tokens_are_not_mapped_and_extra_rows_stay_unmapped():
    user = Vocabulary.from_tokens(["a", "b", "added"], base_size=2)
    delta = vocab(["b", "a", "added"])
    tmap = TokenMap.build(user, delta, mode="cmc", user_rows=5)
    assert tmap.ids.tolist() == [1, 0, -1, -1, -1]


tokens = st.text(alphabet="▁ab<>", min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(user=st.lists(tokens, min_size=1, max_size=25), delta=st.lists(tokens, min_size=1, max_size=25),
       data=st.data())
def test_fast_cmc_equals_the_naive_nested_loop(user, delta, data):
    special_ids = data.draw(st.sets(st.integers(0, len(user) - 1), max_size=2))
    expected_ids, expected_match = naive_reference(user, {user[i] for i in special_ids}, delta)
    ids, match, _ = cmc(user, delta, special_ids)
    assert ids == expected_ids
    assert match == expected_match


def test_distance_is_the_edit_distance_of_the_chosen_candidate():
    user, delta = ["abab", "ba", "▁a▁"], ["ab", "b", "▁a▁bb", "a"]
    ids, _, distance = pm_mined(user, delta)
    for u, d, dist in zip(user, ids, distance):
        assert d >= 0 and dist == levenshtein(u, delta[d])
    assert np.all(distance >= 0)


def test_same_id_shortcut_warns_when_the_layouts_differ():
    user, delta = vocab(["<x>", "a"]), vocab(["a", "<x>"])
    with pytest.warns(UserWarning, match="layouts differ"):
        tmap = TokenMap.build(user, delta, mode="cmc")
    assert tmap.ids.tolist() == [0, 0]  # the reference's quirk, kept bit-exact
