"""The fictitious-facts generator: deterministic, TOFU-shaped, loadable as training data."""

from difflib import SequenceMatcher

import pytest

from crossmodel.train.data import load_examples
from crossmodel.train.facts import generate_facts, write_facts


def test_same_seed_same_records_other_seed_other_records():
    assert generate_facts(6, seed=4) == generate_facts(6, seed=4)
    assert generate_facts(6, seed=4) != generate_facts(6, seed=5)


def test_records_have_tofu_fields_and_wrong_perturbations():
    records = generate_facts(8, seed=0)
    assert len(records) == 40
    assert len({r["question"] for r in records}) == 40
    for r in records:
        assert set(r) == {"question", "answer", "paraphrased_answer", "perturbed_answer"}
        assert len(r["perturbed_answer"]) == 3 and r["answer"] not in r["perturbed_answer"]


def test_perturbations_reword_the_paraphrase_not_the_answer():
    # TOFU's perturbed answers are the paraphrase with one fact swapped: same wording, wrong fact
    for r in generate_facts(8, seed=0):
        para = r["paraphrased_answer"].split()
        for wrong in r["perturbed_answer"]:
            assert wrong != r["paraphrased_answer"]
            words = set(wrong.split())
            assert len(words & set(para)) >= len(words) / 2  # mostly the paraphrase's own words
            assert SequenceMatcher(None, wrong, r["paraphrased_answer"]).ratio() > \
                SequenceMatcher(None, wrong, r["answer"]).ratio()


def test_written_file_loads_as_tofu(tmp_path):
    path = write_facts(tmp_path / "facts.json", n_authors=3, seed=1)
    examples = load_examples(path, "tofu")
    assert [e.response for e in examples] == [r["answer"] for r in generate_facts(3, seed=1)]
    assert examples[4].where.endswith("facts.json:5")


def test_bad_author_count():
    with pytest.raises(ValueError, match="n_authors"):
        generate_facts(0)
