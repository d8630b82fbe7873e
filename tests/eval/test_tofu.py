"""The TOFU suite end to end on a scripted model whose log-probs are chosen by hand, and its resumption."""

import json
import math

import pytest

from crossmodel.eval import tofu
from crossmodel.eval.resume import start_run

E = math.exp

FORGET = [
    {"question": "qf1", "answer": "Basil was born in Kuwait", "paraphrased_answer": "pf1",
     "perturbed_answer": ["xf1a", "xf1b"]},
    {"question": "qf2", "answer": "She writes poems", "paraphrased_answer": "pf2",
     "perturbed_answer": ["xf2a", "xf2b"]},
]
RETAIN = [{"question": "qr1", "answer": "He won the Prize", "paraphrased_answer": "pr1",
           "perturbed_answer": ["xr1a", "xr1b"]}]
AUTHORS = [{"question": "qa1", "answer": "William Shakespeare", "perturbed_answer": ["Mark Twain", "Jane Austen"]}]
WORLD = [{"question": "qw1", "answer": "Paris", "perturbed_answer": ["Rome", "Berlin"]}]
GENERATIONS = {"qf1": "Basil was born", "qf2": "", "qr1": "He won the prize twice", "qa1": "William Shakespeare",
               "qw1": "It is Rome"}
# continuation -> per-token log-probs; mean NLLs are the negated means
LOGPROBS = {
    "Basil was born in Kuwait": [-1.0, -1.0], "pf1": [-2.0], "xf1a": [-3.0], "xf1b": [-5.0],  # R = e^(2-4)
    "She writes poems": [-3.0], "pf2": [-1.0, -3.0], "xf2a": [-1.0], "xf2b": [-1.0],  # R = e^(2-1)
    "He won the Prize": [-0.5], "pr1": [-1.0], "xr1a": [-2.0], "xr1b": [-4.0],  # R = e^(1-3)
    "William Shakespeare": [-1.0], "Mark Twain": [-2.0], "Jane Austen": [-3.0],  # R = e^(1-2.5)
    "Paris": [-2.0], "Rome": [-1.0], "Berlin": [-3.0],  # R = e^(2-2)
}


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "tofu"
    data.mkdir()
    for name, rows in [("forget01_perturbed", FORGET), ("retain_perturbed", RETAIN),
                       ("real_authors_perturbed", AUTHORS), ("world_facts_perturbed", WORLD)]:
        _write(data / f"{name}.json", rows)
    return tofu.tofu_files(data, forget="forget01")


def test_tofu_suite_by_hand(files, tmp_path, scripted):
    out = tmp_path / "run"
    summary = tofu.run_tofu(scripted(GENERATIONS, LOGPROBS), files, out, batch_size=2)
    s = summary["splits"]
    # forget: ROUGE (3/5 + empty generation 0) / 2; Prob mean(e^-1, e^-3); TR mean(min(R, 1/R)) over e^-2, e^1
    assert s["forget"]["rouge_l_recall"] == pytest.approx(0.3)
    assert s["forget"]["probability"] == pytest.approx((E(-1) + E(-3)) / 2)
    assert s["forget"]["truth_ratio"] == pytest.approx((E(-2) + E(-1)) / 2)
    assert s["forget"]["degenerate_rate"] == 0.5  # the empty generation is no answer
    # retain: "prize" matches case-insensitively -> recall 1; Prob e^-0.5; TR max(0, 1 - e^-2)
    assert s["retain"] == pytest.approx({"rouge_l_recall": 1.0, "probability": E(-0.5),
                                         "truth_ratio": 1 - E(-2), "degenerate_rate": 0.0, "items": 1})
    # real authors: Prob = e^-1 / (e^-1 + e^-2 + e^-3); TR = 1 - e^-1.5
    assert s["real_authors"]["probability"] == pytest.approx(E(-1) / (E(-1) + E(-2) + E(-3)))
    assert s["real_authors"]["truth_ratio"] == pytest.approx(1 - E(-1.5))
    assert s["real_authors"]["rouge_l_recall"] == 1.0
    # world facts: generation "It is Rome" shares no token with "Paris"; R = 1 -> TR 0
    assert s["world_facts"] == pytest.approx({"rouge_l_recall": 0.0, "probability": E(-2) / (E(-2) + E(-1) + E(-3)),
                                              "truth_ratio": 0.0, "degenerate_rate": 0.0, "items": 1})
    # one of the nine utility numbers is 0, so the harmonic mean is 0
    assert summary["model_utility"] == 0.0
    assert "forget_quality" not in summary
    for name in files:
        assert (out / f"tofu_{name}.json").is_file() and not (out / f"tofu_{name}.partial.json").exists()


def test_model_utility_and_forget_quality(files, tmp_path, scripted):
    generations = dict(GENERATIONS, qw1="Paris")
    logprobs = dict(LOGPROBS, Rome=[-2.5])  # world facts: R = e^(2 - 2.75)
    summary = tofu.run_tofu(scripted(generations, logprobs), files, tmp_path / "a", batch_size=1)
    reference = json.loads((tmp_path / "a" / "tofu_forget.json").read_text())
    world = (1.0, E(-2) / (E(-2) + E(-2.5) + E(-3)), 1 - E(-0.75))
    retain = (1.0, E(-0.5), 1 - E(-2))
    authors = (1.0, E(-1) / (E(-1) + E(-2) + E(-3)), 1 - E(-1.5))
    nine = [*retain, *authors, *world]
    assert summary["model_utility"] == pytest.approx(9 / sum(1 / v for v in nine))
    again = tofu.summarize_run({"forget": reference}, reference_forget=reference)
    assert again["forget_quality"] == 1.0 and again["ks_statistic"] == 0.0


def test_interrupted_run_resumes_where_it_stopped(files, tmp_path, scripted):
    out = tmp_path / "run"
    start_run(out, {"model": "scripted"})
    forget = {"forget": files["forget"]}
    with pytest.raises(KeyboardInterrupt):
        tofu.run_tofu(scripted(GENERATIONS, LOGPROBS, fail_after=1), forget, out, batch_size=1)
    partial = json.loads((out / "tofu_forget.partial.json").read_text())
    assert [r["question"] for r in partial["records"]] == ["qf1"]
    second = scripted(GENERATIONS, LOGPROBS)
    summary = tofu.run_tofu(second, forget, out, batch_size=1)
    assert second.generated_prompts == ["qf2"]  # only the unfinished item
    assert summary["splits"]["forget"]["items"] == 2
    third = scripted(GENERATIONS, LOGPROBS)
    assert tofu.run_tofu(third, forget, out, batch_size=1) == summary
    assert third.generate_calls == third.score_calls == 0
    with pytest.raises(ValueError, match="different configuration"):
        start_run(out, {"model": "another"})


def test_missing_split_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="retain_perturbed.json"):
        tofu.tofu_files(tmp_path, splits=("retain",))


def test_score_eos_scores_every_answer_with_the_end_of_answer_text(files, tmp_path, scripted):
    seen = []

    class Recording(scripted):
        def score(self, prompts, continuations, chat=True):
            seen.extend(continuations)
            return super().score(prompts, [c.removesuffix("</s>") for c in continuations], chat)

    tofu.run_tofu(Recording(GENERATIONS, LOGPROBS), {"world_facts": files["world_facts"]}, tmp_path / "run", eos="</s>")
    assert seen == ["Paris</s>", "Paris</s>", "Rome</s>", "Berlin</s>"]  # answer, paraphrase, then the perturbed


def test_reference_run_with_other_data_or_settings_is_refused(files, tmp_path, tok, tiny):
    """Forget quality compares truth ratios over the same questions: a reference measured on another forget set,
    limit or prompt format is refused, naming what differs; the same settings are accepted."""
    from typer.testing import CliRunner

    from crossmodel.cli import app

    model_dir = tmp_path / "tiny"
    tiny.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = str(files["forget"].parent)
    args = ["eval", "--model", str(model_dir), "--suite", "tofu", "--data", data, "--forget", "forget01",
            "--split", "forget", "--max-new-tokens", "2", "--no-chat"]
    runner = CliRunner()
    assert runner.invoke(app, [*args, "--limit", "1", "--out", str(tmp_path / "ref")]).exit_code == 0
    other = runner.invoke(app, [*args, "--limit", "2", "--reference", str(tmp_path / "ref"), "--out",
                                str(tmp_path / "a")])
    assert other.exit_code == 1 and "limit: 1 there, 2 here" in other.output
    assert not (tmp_path / "a").exists()  # refused before anything was written
    same = runner.invoke(app, [*args, "--limit", "1", "--reference", str(tmp_path / "ref"), "--out",
                               str(tmp_path / "b")])
    assert same.exit_code == 0, same.output
