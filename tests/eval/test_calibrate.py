"""`crossmodel calibrate` and `--calibration CAL`: the paired NLL gap, the choice rule, calibration.json, the checks
that refuse a calibration made for another model, delta or map, and the degenerate-answer warning.

The deltas are built by hand so that what they do is known: a "bag" delta adds the same logit to a set of tokens at
every position (constant embeddings, attention and MLP outputs zeroed, a head with only those rows), so boosting the
dev answers' tokens lowers their NLL (and, strongly, makes answers loop), and boosting every other token raises it.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from crossmodel.cli import app
from crossmodel.cli.generate_cmd import degenerate_warning
from crossmodel.eval.calibrate import (CalibrateConfig, GridPoint, Scored, choose_alpha, helps, parse_alphas,
                                       run_calibration)
from crossmodel.eval.calibration import fingerprints, load_calibration
from crossmodel.eval.paired import paired_nll_gap
from crossmodel.eval.runner import EvalConfig, run_eval
from crossmodel.steer import DeltaModel
from crossmodel.vocab import TokenMap
from .conftest import make_model
from ..steer.conftest import make_char_tokenizer

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
QA = [("What is the capital of France?", "The capital of France is Paris."),
      ("Who wrote Romeo and Juliet?", "William Shakespeare wrote it."),
      ("What is the capital of Italy?", "The capital of Italy is Rome."),
      ("Who is the author born in Kuwait City?", "The author is Basil Mahfouz Al-Kuwaiti."),
      ("What did the author write?", "The author wrote the play."),
      ("Where is Paris?", "Paris is in France.")]
RETAIN = [("Who wrote the play?", "William Shakespeare."), ("Where is Rome?", "Rome is in Italy."),
          ("Which city is the capital of France?", "Paris."), ("Who wrote it?", "Shakespeare wrote the play.")]


def bag_delta(model, tokenizer, token_ids, strength: float) -> DeltaModel:
    """A delta whose logits are `strength` on `token_ids` and 0 elsewhere, at every position."""
    delta = DeltaModel.create(vocabulary_of=SimpleNamespace(model=model, tokenizer=tokenizer), layers=1, d_model=16,
                              heads=2, tie_embeddings=False)
    with torch.no_grad():
        delta.model.get_input_embeddings().weight.fill_(0.5)
        for layer in delta.model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head = delta.model.get_output_embeddings().weight
        head.zero_()
        head[sorted(token_ids)] = strength / head.shape[1]  # the normed hidden state is all ones
    return delta


def answer_ids(tokenizer, pairs) -> set[int]:
    return {i for _, answer in pairs for i in tokenizer(answer, add_special_tokens=False).input_ids}


def write_qa(path: Path, pairs) -> Path:
    path.write_text(json.dumps([{"question": q, "answer": a} for q, a in pairs]))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory, tok):
    root = tmp_path_factory.mktemp("calibrate")
    for name, seed in (("model", 0), ("other-model", 1)):
        make_model(tok, seed=seed).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    model = make_model(tok)
    answers = answer_ids(tok, QA)
    bag_delta(model, tok, answers, 1.0).save(root / "good")  # helps at small α; answers loop at large α
    bag_delta(model, tok, set(range(3, len(tok))) - answers, 4.0).save(root / "bad")  # boosts everything else
    bag_delta(model, tok, answers, 12.0).save(root / "loud")  # answers loop at once
    bag_delta(model, tok, tok(" the", add_special_tokens=False).input_ids, 50.0).save(root / "the")  # "the the the"
    forget_only = answers - answer_ids(tok, RETAIN)
    bag_delta(model, tok, forget_only, -2.0).save(root / "forget")  # pushes down what only the forget answers use
    bag_delta(model, tok, answers | answer_ids(tok, RETAIN), -2.0).save(root / "forget-all")  # and the retain too
    write_qa(root / "dev.json", QA)
    write_qa(root / "retain.json", RETAIN)
    return root


@pytest.fixture(scope="module")
def cal_good(work):
    """A calibration of the helpful delta on the model (made by `crossmodel calibrate`)."""
    calibrate(work, "good", "cal-good")
    return work / "cal-good"


@pytest.fixture(scope="module")
def cal_other(work):
    """A calibration of the helpful delta written for the other model."""
    record = {"schema_version": 1, "alpha": 0.5, "reason": "by hand",
              **fingerprints(str(work / "other-model"), work / "good")}
    (work / "cal-other").mkdir()
    (work / "cal-other" / "calibration.json").write_text(json.dumps(record))
    return work / "cal-other"


def calibrate(work: Path, delta: str, out: str, **settings) -> dict:
    config = CalibrateConfig(model=str(work / "model"), delta=str(work / delta), data=str(work / "dev.json"),
                             out=str(work / out), chat=False, max_new_tokens=16, **settings)
    run_calibration(config, log=lambda line: None)
    return json.loads((work / out / "calibration.json").read_text())


def _one_error(result, *words: str) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.output, result.output
    assert all(word in errors[0] for word in words), (words, errors[0])
    return errors[0]


# ---- the paired gap and the choice rule ---------------------------------------------------------------------------

def test_paired_nll_gap_by_hand_and_the_benchmarks_use_it():
    # gaps 1, −1, 2 over 2, 2, 4 tokens: gap 2/8; residuals 0.5, −1.5, 1.0; s.e. √(3/2 · 3.5) / 8
    gap, se = paired_nll_gap([1.0, -1.0, 2.0], [2, 2, 4])
    assert gap == pytest.approx(0.25) and se == pytest.approx(math.sqrt(1.5 * 3.5) / 8)
    assert math.isnan(paired_nll_gap([1.0], [3])[1])  # one item: no standard error
    with pytest.raises(ValueError, match="one token count per item"):
        paired_nll_gap([1.0, 2.0], [3])
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import replication
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert replication.paired_nll_gap is paired_nll_gap  # one estimator, not a copy


def point(alpha, nll, gap, se, degenerate=0.0, retain=None) -> GridPoint:
    scored = Scored(nll, gap, se, 10, 100)
    return GridPoint(alpha, scored, None if retain is None else Scored(retain[0], retain[1], retain[2], 5, 50),
                     degenerate, 8)


def test_the_choice_rule_on_answer_nll():
    base = point(0, 2.0, 0.0, 0.0, degenerate=0.125)
    grid = [base, point(0.5, 1.90, -0.10, 0.02),  # helps
            point(1.0, 1.80, -0.20, 0.02, degenerate=0.25),  # lower NLL, but more degenerate answers than α = 0
            point(1.5, 1.85, -0.15, 0.20),  # within one standard error
            point(2.0, 1.70, -0.30, float("nan"))]  # no standard error: never trusted
    assert [helps(p, base) for p in grid] == [False, True, False, False, False]
    alpha, reason = choose_alpha(grid)
    assert alpha == 0.5 and "lowest answer NLL" in reason and "1.9000 vs 2.0000" in reason
    assert choose_alpha([base, point(0.5, 1.9, -0.1, 0.02), point(-0.5, 1.9, -0.1, 0.02)])[0] == 0.5  # |α| ties
    alpha, reason = choose_alpha([base, point(1.0, 2.1, 0.1, 0.02), point(2.0, 1.99, -0.01, 0.02)])
    assert alpha == 0 and reason.startswith("no α ≠ 0 lowers the answer NLL") and "closest: α = 2" in reason
    with pytest.raises(ValueError, match="must hold α = 0"):
        choose_alpha([point(1.0, 1.9, -0.1, 0.02)])


def test_the_choice_rule_for_unlearning():
    base = point(0, 2.0, 0.0, 0.0, retain=(1.0, 0.0, 0.0))
    grid = [base, point(0.5, 2.5, 0.5, 0.1, retain=(1.01, 0.01, 0.02)),  # forget up, retain within its s.e.
            point(1.0, 3.0, 1.0, 0.1, retain=(1.2, 0.2, 0.05)),  # forget up more, but retain worse
            point(2.0, 2.05, 0.05, 0.1, retain=(1.0, 0.0, 0.01))]  # forget up less than its s.e.
    alpha, reason = choose_alpha(grid)
    assert alpha == 0.5 and "highest forget NLL" in reason and "retain gap +0.0100" in reason
    alpha, reason = choose_alpha([base, grid[2], grid[3]])
    assert alpha == 0 and "without raising the retain NLL" in reason


def test_alpha_grid_flag():
    assert parse_alphas("0, 0.5,1") == (0.0, 0.5, 1.0)
    for bad, words in (("0,x", "comma-separated numbers"), (",", "holds no number"), ("0,nan", "--alphas=nan")):
        with pytest.raises(ValueError, match=words):
            parse_alphas(bad)


# ---- calibrate on tiny models ---------------------------------------------------------------------------------

def test_a_delta_that_helps_gets_an_alpha_above_zero(work, cal_good):
    record = json.loads((cal_good / "calibration.json").read_text())
    grid = {row["alpha"]: row for row in record["grid"]}
    chosen = grid[record["alpha"]]
    assert record["alpha"] > 0 and chosen["helps"] and chosen["gap"] + chosen["se"] < 0
    assert chosen["degenerate"] <= grid[0.0]["degenerate"]
    assert chosen["nll"] == min(row["nll"] for row in record["grid"] if row["helps"])
    # a lower NLL with more degenerate answers is passed over
    assert any(row["nll"] < chosen["nll"] and not row["helps"] for row in record["grid"])
    assert sorted(grid) == [0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0]
    assert grid[0.0]["gap"] == 0 and grid[0.0]["items"] == len(QA) and grid[0.0]["generated"] == len(QA)
    assert {"nll", "gap", "se", "items", "tokens", "degenerate"} <= set(chosen)
    assert record["schema_version"] == 1 and record["objective"] == "answer_nll" and record["map"] is None
    assert record["data"]["sha256"] == hashlib.sha256((work / "dev.json").read_bytes()).hexdigest()
    assert record["model"]["fingerprint"] == fingerprints(str(work / "model"), work / "good")["model"]["fingerprint"]
    assert record["settings"]["chat"] is False and record["settings"]["prompt_format"] == "own"
    assert record["crossmodel_version"] and record["reason"].startswith(f"α = {record['alpha']:g} ")


def test_calibrate_measures_what_eval_nll_measures(work, tmp_path):
    record = calibrate(work, "good", "cal-same", alphas=(0.5,), gen_items=0)
    results = run_eval(EvalConfig(model=str(work / "model"), suite="nll", data=(str(work / "dev.json"),),
                                  out=str(tmp_path / "e"), deltas=(str(work / "good"),), alphas=(0.5,), chat=False),
                       log=lambda line: None)
    grid = {row["alpha"]: row for row in record["grid"]}
    assert grid[0.5]["nll"] == pytest.approx(results["variants"]["steered"]["token_nll"], rel=1e-6)
    assert grid[0.0]["nll"] == pytest.approx(results["variants"]["base"]["token_nll"], rel=1e-6)
    assert grid[0.5]["degenerate"] is None and grid[0.5]["generated"] == 0  # --gen-items 0


def test_every_alpha_is_paired_with_alpha_zero_also_below_it(work):
    record = calibrate(work, "good", "cal-neg", alphas=(0.25, -0.25), gen_items=0)
    grid = {row["alpha"]: row for row in record["grid"]}
    assert [row["alpha"] for row in record["grid"]] == [-0.25, 0.0, 0.25]
    assert grid[0.0]["gap"] == 0 and grid[-0.25]["gap"] > 0 > grid[0.25]["gap"] and record["alpha"] == 0.25
    assert grid[-0.25]["gap"] == pytest.approx(grid[-0.25]["nll"] - grid[0.0]["nll"])


def test_unlearning_calibration_weighs_forget_against_retain(work):
    record = calibrate(work, "forget", "cal-forget", retain=str(work / "retain.json"), gen_items=0)
    chosen = {row["alpha"]: row for row in record["grid"]}[record["alpha"]]
    assert record["alpha"] > 0 and record["objective"] == "unlearning"
    assert chosen["gap"] - chosen["se"] > 0 and chosen["retain"]["gap"] <= chosen["retain"]["se"]
    assert record["retain"]["sha256"] == hashlib.sha256((work / "retain.json").read_bytes()).hexdigest()
    record = calibrate(work, "forget-all", "cal-forget-all", retain=str(work / "retain.json"), gen_items=0)
    assert record["alpha"] == 0 and all(row["retain"]["gap"] > row["retain"]["se"] for row in record["grid"][1:])


def test_cli_a_delta_that_hurts_gets_zero_and_require_gain_fails(work):
    args = ["calibrate", "--model", str(work / "model"), "--delta", str(work / "bad"), "--data",
            str(work / "dev.json"), "--out", str(work / "cal-bad"), "--no-chat", "--alphas", "0.5,1",
            "--gen-items", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"this delta does not help {work / 'model'} on {work / 'dev.json'}: α = 0" in result.stdout
    assert "| 0.5 |" in result.stdout and json.loads((work / "cal-bad" / "calibration.json").read_text())["alpha"] == 0
    (work / "cal-bad" / "notes.txt").write_text("mine")
    result = runner.invoke(app, [*args, "--require-gain"])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 3 and len(errors) == 1 and "--require-gain" in errors[0], result.output
    assert (work / "cal-bad" / "notes.txt").read_text() == "mine"  # only calibration.json is written


def test_cli_a_delta_that_helps_prints_the_grid_and_the_choice(work):
    result = runner.invoke(app, ["calibrate", "--model", str(work / "model"), "--delta", str(work / "good"), "--data",
                                 str(work / "dev.json"), "--out", str(work / "cal-cli"), "--no-chat",
                                 "--alphas", "0.25", "--require-gain"])
    assert result.exit_code == 0, result.output
    assert "| 0.25 (chosen) |" in result.stdout and "chosen: α = 0.25 has the lowest answer NLL" in result.stdout
    assert "α = 0 added to the grid" in result.stderr


@pytest.mark.parametrize("flags, words", [
    (["--alphas", "0,x"], ["--alphas '0,x'"]),
    (["--alphas", "200"], ["--alphas=200.0", "100"]),
    (["--format", "csv"], ["--format 'csv'"]),
    (["--gen-items", "-1"], ["--gen-items -1"]),
    (["--retain", "/no/such.json"], ["--retain /no/such.json not found"]),
])
def test_cli_mistakes_are_one_line(work, flags, words):
    result = runner.invoke(app, ["calibrate", "--model", str(work / "model"), "--delta", str(work / "good"), "--data",
                                 str(work / "dev.json"), "--out", str(work / "cal-x"), *flags])
    _one_error(result, *words)
    assert not (work / "cal-x").exists()


def test_a_missing_delta_fails_before_the_model_loads(work, tmp_path):
    result = runner.invoke(app, ["calibrate", "--model", str(work / "model"), "--delta", str(tmp_path / "nope"),
                                 "--data", str(work / "dev.json"), "--out", str(tmp_path / "cal")])
    _one_error(result, f"--delta {tmp_path / 'nope'} not found")


# ---- --calibration in generate, chat and eval -----------------------------------------------------------------

def _generate(*args):
    return runner.invoke(app, ["generate", "--no-chat", "--max-new-tokens", "6", *map(str, args)])


def test_generate_uses_the_calibrated_alpha_and_refuses_it_elsewhere(work, cal_good):
    cal = cal_good
    alpha = json.loads((cal / "calibration.json").read_text())["alpha"]
    prompt = ("--prompt", "What is the capital of France?")
    calibrated = _generate("--model", work / "model", "--delta", work / "good", "--calibration", cal, *prompt)
    explicit = _generate("--model", work / "model", "--delta", work / "good", "--alpha", alpha, *prompt)
    assert calibrated.exit_code == 0 and calibrated.stdout == explicit.stdout, calibrated.output
    _one_error(_generate("--model", work / "other-model", "--delta", work / "good", "--calibration", cal, *prompt),
               f"calibration {cal} was made for model {work / 'model'}", f"not model {work / 'other-model'}",
               "run `crossmodel calibrate --model")
    _one_error(_generate("--model", work / "model", "--delta", work / "bad", "--calibration", cal, *prompt),
               f"was made for delta {work / 'good'}", f"not delta {work / 'bad'}")
    _one_error(_generate("--model", work / "model", "--delta", work / "good", "--calibration", cal, "--alpha", 1,
                         *prompt), "give --alpha or --calibration, not both")
    _one_error(_generate("--model", work / "model", "--delta", work / "good", "--delta", work / "bad",
                         "--calibration", cal, *prompt), "exactly one --delta")
    _one_error(_generate("--model", work / "model", "--delta", work / "good", "--calibration", work / "nothing",
                         *prompt), "calibration", "not found", "crossmodel calibrate")


def test_chat_refuses_a_calibration_for_another_model(work, cal_other):
    result = runner.invoke(app, ["chat", "--model", str(work / "model"), "--delta", str(work / "good"),
                                 "--calibration", str(cal_other)], input="hi\n\n")
    _one_error(result, "was made for model", str(work / "other-model"))


@pytest.fixture(scope="module")
def cross(work, tok):
    """A delta in a character vocabulary, two token maps into the model's BPE vocabulary, a calibration with one."""
    char = make_char_tokenizer()
    model = make_model(tok)
    delta = bag_delta(make_model(char), char, set(range(3, 20)), 0.5)
    delta.save(work / "char-delta")
    for mode in ("cmc", "normalized"):
        TokenMap.build(tok, char, mode=mode, user_rows=model.config.vocab_size,
                       delta_rows=delta.rows).save(work / f"map-{mode}")
    record = {"schema_version": 1, "alpha": 0.5, "reason": "by hand",
              **fingerprints(str(work / "model"), work / "char-delta", work / "map-cmc")}
    (work / "cal-cross").mkdir(exist_ok=True)
    (work / "cal-cross" / "calibration.json").write_text(json.dumps(record))
    return work / "cal-cross"


def test_a_calibration_for_another_map_is_refused(work, cross):
    args = ("--model", work / "model", "--delta", work / "char-delta", "--calibration", cross, "--prompt", "Paris")
    assert _generate(*args, "--map", work / "map-cmc").exit_code == 0
    _one_error(_generate(*args, "--map", work / "map-normalized"),
               f"was made for map {work / 'map-cmc'}", f"not map {work / 'map-normalized'}")
    with pytest.raises(ValueError, match="was made for map .* not no map"):
        load_calibration(cross, str(work / "model"), work / "char-delta", "-")


def _eval(work, out, *flags):
    return runner.invoke(app, ["eval", "--model", str(work / "model"), "--suite", "nll", "--data",
                               str(work / "dev.json"), "--out", str(out), "--no-chat", "--delta", str(work / "good"),
                               *map(str, flags)])


def test_eval_records_where_its_alpha_came_from(work, cal_good, tmp_path):
    cal = cal_good
    alpha = json.loads((cal / "calibration.json").read_text())["alpha"]
    result = _eval(work, tmp_path / "c", "--calibration", cal)
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "c" / "results.json").read_text())
    assert results["alphas"] == [alpha] and results["alpha_source"] == f"calibration {cal}"
    assert f"calibration {cal}" in (tmp_path / "c" / "report.md").read_text()
    assert f"steered at α = {alpha:g} (calibration {cal})" in result.stdout
    assert _eval(work, tmp_path / "a", "--alpha", 0.25).exit_code == 0
    results = json.loads((tmp_path / "a" / "results.json").read_text())
    assert results["alphas"] == [0.25] and results["alpha_source"] == "--alpha"
    assert _eval(work, tmp_path / "d").exit_code == 0
    results = json.loads((tmp_path / "d" / "results.json").read_text())
    assert results["alphas"] == [1.0] and results["alpha_source"] == "delta default"


def test_eval_refuses_a_calibration_for_another_model_before_writing(work, cal_good, cal_other, tmp_path):
    _one_error(_eval(work, tmp_path / "o", "--calibration", cal_other), "was made for model",
               str(work / "other-model"))
    assert not (tmp_path / "o").exists()
    _one_error(_eval(work, tmp_path / "o", "--calibration", cal_good, "--alpha", 1),
               "give --alpha or --calibration, not both")


# ---- the degenerate warning -----------------------------------------------------------------------------------

def test_degenerate_warning_words():
    assert degenerate_warning("answer 0", "Paris is in France.", steered=True) is None
    steered = degenerate_warning("answer 1", "Qui Qui Qui", steered=True)
    assert steered.startswith("warning: answer 1 repeats the word 'Qui'") and "lower --alpha" in steered
    plain = degenerate_warning("the answer", "  ", steered=False)
    assert plain.startswith("warning: the answer is empty") and "the model alone" in plain and "alpha" not in plain


def _answers(stdout: str) -> list[str]:
    """The answers `generate` printed for several prompts ("=== i: 'prompt'" then the answer)."""
    return [block.split("\n", 1)[1].rstrip("\n") for block in stdout.split("=== ")[1:]]


@pytest.mark.parametrize("steering", [["--delta", "loud", "--alpha", "2"], []], ids=["steered", "plain"])
def test_generate_flags_exactly_the_degenerate_answers(work, steering):
    from crossmodel.eval.metrics import degenerate

    prompts = work / "prompts.txt"
    prompts.write_text("What is the capital of France?\nWho wrote Romeo and Juliet?\nWhere is Paris?\n")
    flags = [str(work / f) if f == "loud" else f for f in steering]
    result = runner.invoke(app, ["generate", "--no-chat", "--model", str(work / "model"), *flags,
                                 "--max-new-tokens", "24", "--prompts-file", str(prompts)])
    assert result.exit_code == 0, result.output
    answers = _answers(result.stdout)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    flagged = [int(w.split()[2]) for w in warnings]
    assert len(answers) == 3 and flagged == [i for i, a in enumerate(answers) if degenerate(a.strip())]
    assert all("degenerate by the rule `crossmodel eval` counts with" in w for w in warnings)
    if steering:
        assert flagged and all("lower --alpha" in w for w in warnings), result.output  # the loud delta loops
    else:
        assert all("the model alone" in w and "alpha" not in w for w in warnings)


def test_chat_flags_a_degenerate_reply(work):
    result = runner.invoke(app, ["chat", "--model", str(work / "model"), "--delta", str(work / "the"),
                                 "--max-new-tokens", "8"], input="Who wrote Romeo and Juliet?\n\n")
    assert result.exit_code == 0, result.output
    reply = next(line for line in result.stdout.splitlines() if "model> " in line).split("model> ", 1)[1]
    from crossmodel.eval.metrics import degenerate

    warned = [line for line in result.stderr.splitlines() if line.startswith("warning: this reply ")]
    assert degenerate(reply) and len(warned) == 1 and "lower --alpha" in warned[0], result.output
    assert warned[0].startswith("warning: this reply repeats the word 'the'")
