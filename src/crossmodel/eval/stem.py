"""The Porter stemmer (Porter 1980, "An algorithm for suffix stripping") with NLTK's extensions.

ROUGE as TOFU computes it (`rouge_score` with `use_stemmer=True`) stems with `nltk.stem.porter.PorterStemmer()`,
whose default mode is NLTK_EXTENSIONS. This is an independent implementation of that variant, written from the
paper plus the documented NLTK departures (irregular-forms table; words of <= 2 letters kept; `ies`/`ied` on
4-letter words -> `ie`; y -> i only after a consonant; `alli`, `fulli`, `logi` and `bli` rules in step 2; the
two-letter vowel-consonant case of *o). Each rule list applies the first rule whose suffix matches: if that
rule's condition fails the word is left as it is (no later rule is tried), as in Porter's C code.
"""

from __future__ import annotations

from functools import lru_cache

_IRREGULAR = {
    "skies": "sky", "sky": "sky", "dying": "die", "lying": "lie", "tying": "tie", "news": "news",
    "innings": "inning", "inning": "inning", "outings": "outing", "outing": "outing",
    "cannings": "canning", "canning": "canning", "howe": "howe",
    "proceed": "proceed", "exceed": "exceed", "succeed": "succeed",
}
Rule = tuple[str, str, "Callable[[str], bool] | None"]


def _consonant(word: str, i: int) -> bool:
    ch = word[i]
    if ch in "aeiou":
        return False
    if ch == "y":  # y is a vowel after a consonant, a consonant at the start or after a vowel
        return i == 0 or not _consonant(word, i - 1)
    return True


def _measure(stem: str) -> int:
    """m in [C](VC)^m[V]: the number of vowel->consonant transitions."""
    pattern = "".join("c" if _consonant(stem, i) else "v" for i in range(len(stem)))
    return pattern.count("vc")


def _has_vowel(stem: str) -> bool:
    return any(not _consonant(stem, i) for i in range(len(stem)))


def _double_consonant(word: str) -> bool:
    return len(word) >= 2 and word[-1] == word[-2] and _consonant(word, len(word) - 1)


def _ends_cvc(word: str) -> bool:
    """Porter's *o (consonant-vowel-consonant, last not w/x/y), plus NLTK's two-letter vowel-consonant case."""
    if len(word) >= 3:
        return (_consonant(word, len(word) - 3) and not _consonant(word, len(word) - 2)
                and _consonant(word, len(word) - 1) and word[-1] not in "wxy")
    return len(word) == 2 and not _consonant(word, 0) and _consonant(word, 1)


def _apply(word: str, rules: list[Rule]) -> str:
    """Apply the first rule whose suffix matches; a failed condition stops the list ("*d" = double consonant)."""
    for suffix, replacement, condition in rules:
        if suffix == "*d":
            if not _double_consonant(word):
                continue
            stem = word[:-2]
        elif word.endswith(suffix):
            stem = word[: len(word) - len(suffix)]
        else:
            continue
        return stem + replacement if condition is None or condition(stem) else word
    return word


def _positive(stem: str) -> bool:
    return _measure(stem) > 0


def _above_one(stem: str) -> bool:
    return _measure(stem) > 1


def _step1a(word: str) -> str:
    if word.endswith("ies") and len(word) == 4:
        return word[:-3] + "ie"
    return _apply(word, [("sses", "ss", None), ("ies", "i", None), ("ss", "ss", None), ("s", "", None)])


def _step1b(word: str) -> str:
    if word.endswith("ied"):
        return word[:-3] + ("ie" if len(word) == 4 else "i")
    if word.endswith("eed"):
        return word[:-1] if _measure(word[:-3]) > 0 else word
    for suffix in ("ed", "ing"):
        if word.endswith(suffix) and _has_vowel(word[: -len(suffix)]):
            stem = word[: -len(suffix)]
            break
    else:
        return word
    return _apply(stem, [
        ("at", "ate", None), ("bl", "ble", None), ("iz", "ize", None),
        ("*d", stem[-1], lambda s: stem[-1] not in "lsz"),
        ("", "e", lambda s: _measure(s) == 1 and _ends_cvc(s)),
    ])


def _step1c(word: str) -> str:
    return _apply(word, [("y", "i", lambda s: len(s) > 1 and _consonant(s, len(s) - 1))])


_STEP2 = [(s, r, _positive) for s, r in [
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"), ("izer", "ize"),
    ("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous"), ("ization", "ize"),
    ("ation", "ate"), ("ator", "ate"), ("alism", "al"), ("iveness", "ive"), ("fulness", "ful"),
    ("ousness", "ous"), ("aliti", "al"), ("iviti", "ive"), ("biliti", "ble"), ("fulli", "ful"),
]]
_STEP3 = [(s, r, _positive) for s, r in [
    ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"), ("ful", ""), ("ness", ""),
]]
_STEP4 = [(s, "", _above_one) for s in [
    "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent",
]] + [("ion", "", lambda s: _measure(s) > 1 and s[-1:] in ("s", "t"))] + [(s, "", _above_one) for s in [
    "ou", "ism", "ate", "iti", "ous", "ive", "ize",
]]


def _step2(word: str) -> str:
    if word.endswith("alli") and _positive(word[:-4]):
        return _step2(word[:-4] + "al")
    # NLTK keeps the l of -logi with the stem (geo-logi -> geo-log) and asks m > 0 of the stem before "ogi"
    return _apply(word, _STEP2 + [("logi", "log", lambda s: _positive(word[:-3]))])


def _step5(word: str) -> str:
    if word.endswith("e"):
        stem = word[:-1]
        if _measure(stem) > 1 or (_measure(stem) == 1 and not _ends_cvc(stem)):
            word = stem
    return _apply(word, [("ll", "l", lambda s: _measure(word[:-1]) > 1)])


@lru_cache(maxsize=65536)
def porter_stem(word: str) -> str:
    """The Porter stem of one lower-case word, as NLTK's default `PorterStemmer().stem` gives it."""
    word = word.lower()
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) <= 2:
        return word
    for step in (_step1a, _step1b, _step1c, _step2, lambda w: _apply(w, _STEP3), lambda w: _apply(w, _STEP4),
                 _step5):
        word = step(word)
    return word
