"""Steered decoding calls the models the way the installed transformers wants: no deprecation warnings, which
would otherwise print on every run (and inside `crossmodel chat` replies)."""

import warnings

from crossmodel.steer import steer


def test_steered_generation_and_scoring_warn_nothing(char_user, char_delta, bpe_user, char_tok):
    from crossmodel.vocab import TokenMap

    token_map = TokenMap.build(bpe_user.tokenizer, char_tok, user_rows=bpe_user.model.config.vocab_size,
                               delta_rows=char_delta.rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        steer(char_user, deltas=[(char_delta, 1.0, None)]).generate(["Hello"], 6)
        steer(bpe_user, deltas=[(char_delta, 1.0, token_map)]).generate(["Hello"], 6)
        steer(char_user, deltas=[(char_delta, 1.0, None)]).score(["Hello"], [" there"])
    assert [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))] == []
