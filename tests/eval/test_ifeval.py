"""The IFEval suite: lm-eval's checker offline (parity with its reference figures), greedy answers → verdicts →
files on tiny models (plain, steered same- and cross-vocabulary), resume, the paired test, one-line errors."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from crossmodel.cli import app
from crossmodel.eval import PlainModel, ifeval
from crossmodel.eval.ifeval import load_checker, load_ifeval, run_ifeval
from crossmodel.eval.paired import mcnemar_exact, paired_comparison
from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE
from crossmodel.eval.report import compare_runs
from crossmodel.steer import DeltaModel, steer
from crossmodel.vocab import TokenMap

from .conftest import make_model, make_tokenizer

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
IFEVAL = SHARED / "ifeval" / "input_data.jsonl"
NLTK_DATA = SHARED / "nltk_data"
needs_shared = pytest.mark.skipif(not (IFEVAL.is_file() and NLTK_DATA.is_dir()),
                                  reason="IFEval prompts / NLTK data (../shared/data) not present")
# prompts whose verdict the checker draws at random: a `letter` that is not a letter ('#', '!') gets a random
# one, and langdetect is random; every other prompt is scored deterministically
RANDOM_KEYS = {1122, 1129, 3456}
ITEMS = [
    {"key": 1, "prompt": "Write about Paris. Do not use any commas.", "instruction_id_list": ["punctuation:no_comma"],
     "kwargs": [{}]},
    {"key": 2, "prompt": "Name the capital of Italy in lowercase letters only.",
     "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]},
    {"key": 3, "prompt": "Who wrote Romeo and Juliet? Answer with at least 5 words.",
     "instruction_id_list": ["length_constraints:number_words", "punctuation:no_comma"],
     "kwargs": [{"relation": "at least", "num_words": 5}, {}]},
]


def _write(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def checker():
    if not NLTK_DATA.is_dir():
        pytest.skip("NLTK data (../shared/data/nltk_data) not present")
    return load_checker(NLTK_DATA)


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    return load_ifeval(_write(tmp_path_factory.mktemp("ifeval") / "items.jsonl", ITEMS))


@pytest.fixture(scope="module")
def user(tok):
    return make_model(tok, context=1024)


# ---- the checker --------------------------------------------------------------------------------------------
@needs_shared
def test_echo_reproduces_the_checkers_reference_figures(checker):
    """Each response = its prompt: the reference figures of lm-eval's checker on the 541 prompts are prompt-level
    strict 0.248, loose 0.298, instruction-level strict 0.360, loose 0.411. Ours match at 3 decimals but the last
    (0.410 = 342/834): the reference is one random draw of the checker, in which prompt 1122's '#' count was
    checked against two different random letters (failed strict, passed loose); we check strict and loose under
    the same seed. On every prompt without random draws our verdicts are lm-eval's own `process_results`."""
    from lm_eval.tasks.ifeval.utils import process_results

    items = load_ifeval(IFEVAL)
    assert len(items) == 541
    records = []
    for item in items:
        verdict = checker.score(item, item.prompt)
        records.append({**verdict, "instruction_id_list": list(item.instruction_ids), "eos_stop": True,
                        "tokens": 0, "words": 0})
        if item.key not in RANDOM_KEYS:
            doc = {"key": item.key, "prompt": item.prompt, "instruction_id_list": list(item.instruction_ids),
                   "kwargs": list(item.kwargs)}
            theirs = process_results(doc, [item.prompt])
            assert (verdict["prompt_strict"], verdict["prompt_loose"], verdict["follow_strict"],
                    verdict["follow_loose"]) == (theirs["prompt_level_strict_acc"], theirs["prompt_level_loose_acc"],
                                                 theirs["inst_level_strict_acc"], theirs["inst_level_loose_acc"])
    summary = ifeval.summarize_ifeval(records)
    assert summary["instructions"] == 834
    figures = [round(summary[f"{level}_acc"], 3) for level in ("prompt_level_strict", "prompt_level_loose",
                                                                "instruction_level_strict", "instruction_level_loose")]
    assert figures == [0.248, 0.298, 0.360, 0.410]
    assert round(343 / 834, 3) == 0.411  # the reference: one more instruction followed, from the random draw


@needs_shared
def test_scores_are_reproducible_and_leave_the_callers_random_state_alone(checker):
    import random

    item = next(i for i in load_ifeval(IFEVAL) if i.key == 1122)
    random.seed(123)
    expected = random.random()
    random.seed(123)
    verdicts = {json.dumps(checker.score(item, item.prompt)) for _ in range(5)}
    assert len(verdicts) == 1 and random.random() == expected


@needs_shared
def test_sentence_count_reads_punkt_tab_offline(checker):
    """lm-eval asks NLTK for the old pickled punkt; nltk >= 3.9 serves punkt_tab instead (no pickle, no download)."""
    from lm_eval.tasks.ifeval import instructions_util

    assert instructions_util.count_sentences("Mr. Smith went home. He slept. Did he?") == 3


def test_missing_nltk_data_is_one_clear_error(tmp_path, monkeypatch):
    import nltk

    with pytest.raises(FileNotFoundError, match="holds no tokenizers/punkt_tab/english.*nltk.downloader"):
        load_checker(tmp_path)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="--nltk-data DIR or set NLTK_DATA"):
        load_checker(None)


def test_missing_lm_eval_names_the_install(monkeypatch):
    real = ifeval.importlib.util.find_spec
    monkeypatch.setattr(ifeval.importlib.util, "find_spec", lambda name: None if name == "lm_eval" else real(name))
    with pytest.raises(RuntimeError, match=r"lm_eval not installed.*crossmodel\[ifeval\]"):
        load_checker(NLTK_DATA)


# ---- data ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, words", [
    ('{"key": 1, "prompt": "Hi", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}\n{"key": \n',
     ["items.jsonl:2", "not valid JSON"]),
    ('{"key": 1, "prompt": "Hi", "instruction_id_list": ["punctuation:no_comma"]}\n', ["items.jsonl:1", "kwargs"]),
    ('{"question": "Who?", "answer": "Ann."}\n', ["items.jsonl:1", "input_data.jsonl"]),
    ("\n", ["holds no records"]),
])
def test_bad_data_names_the_file_and_line(tmp_path, content, words):
    path = tmp_path / "items.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError) as err:
        load_ifeval(path)
    assert all(w in str(err.value) for w in words), err.value


def test_unknown_instruction_is_named(tmp_path, checker):
    path = _write(tmp_path / "items.jsonl", [dict(ITEMS[0], instruction_id_list=["punctuation:no_commas"])])
    with pytest.raises(ValueError, match=r"items.jsonl:1: unknown IFEval instruction 'punctuation:no_commas'"):
        checker.check_ids(load_ifeval(path))


# ---- the suite on tiny models -------------------------------------------------------------------------------
def test_generation_scoring_and_files(tmp_path, checker, items, user, tok):
    plain = PlainModel(user, tok, batch_size=2)
    summary = run_ifeval(plain, items, tmp_path, checker, chat=True, max_new_tokens=6, batch_size=2)
    records = [json.loads(line) for line in (tmp_path / "responses.jsonl").read_text().splitlines()]
    assert [r["key"] for r in records] == [1, 2, 3]
    # the steered loop without deltas answers exactly as the plain model does
    assert [r["response"] for r in records] == plain.generate([i.prompt for i in items], 6, chat=True)
    for r, item in zip(records, items):
        assert len(r["follow_strict"]) == len(r["follow_loose"]) == len(item.instruction_ids)
        assert r["prompt_loose"] == all(r["follow_loose"])
        assert all(loose or not strict for strict, loose in zip(r["follow_strict"], r["follow_loose"]))
        assert r["tokens"] == 6 and r["eos_stop"] is False  # random weights: no EOS within 6 tokens
    for key in ("prompt_level_strict_acc", "prompt_level_loose_acc", "instruction_level_strict_acc",
                "instruction_level_loose_acc"):
        assert 0 <= summary[key] <= 1
    assert summary["prompts"] == 3 and summary["instructions"] == 4 and summary["eos_stop_rate"] == 0
    assert summary["per_instruction_type"]["punctuation:no_comma"]["n"] == 2
    assert summary["mean_answer_tokens"] == 6 and summary["max_new_tokens"] == 6


def test_eos_stops_are_counted(tmp_path, checker, items, tok):
    model = make_model(tok, context=1024)
    with __import__("torch").no_grad():
        model.lm_head.weight[tok.eos_token_id] = model.lm_head.weight.abs().max(0).values * 50  # EOS always wins
    summary = run_ifeval(PlainModel(model, tok), items, tmp_path, checker, max_new_tokens=6)
    assert summary["eos_stop_rate"] == 1 and summary["mean_answer_tokens"] == 0
    assert summary["prompt_level_strict_acc"] == 0  # an empty answer follows nothing (the checker's rule)


def test_resume_generates_only_what_is_missing(tmp_path, checker, items, user, tok, monkeypatch):
    plain = PlainModel(user, tok)
    reference = run_ifeval(plain, items, tmp_path / "ref", checker, max_new_tokens=5, batch_size=2)
    answered: list[str] = []
    real = ifeval._answer_batch

    def interrupted(generator, checker_, batch, chat, budget):
        if answered:
            raise KeyboardInterrupt("simulated")
        answered.extend(i.prompt for i in batch)
        return real(generator, checker_, batch, chat, budget)

    monkeypatch.setattr(ifeval, "_answer_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_ifeval(plain, items, tmp_path / "run", checker, max_new_tokens=5, batch_size=2)
    assert (tmp_path / "run" / "ifeval.partial.json").is_file() and not (tmp_path / "run" / "responses.jsonl").exists()

    def spy(generator, checker_, batch, chat, budget):
        answered.extend(i.prompt for i in batch)
        return real(generator, checker_, batch, chat, budget)

    monkeypatch.setattr(ifeval, "_answer_batch", spy)
    assert run_ifeval(plain, items, tmp_path / "run", checker, max_new_tokens=5, batch_size=2) == reference
    assert answered == [i.prompt for i in items]  # two before the interruption, the third after it
    assert (tmp_path / "run" / "responses.jsonl").read_text() == (tmp_path / "ref" / "responses.jsonl").read_text()


def test_steered_at_alpha_zero_answers_as_plain(tmp_path, checker, items, user, tok):
    delta = DeltaModel.create(vocabulary_of=tok, layers=1, d_model=32, heads=2, seed=3)
    zero = steer(SimpleNamespace(model=user, tokenizer=tok, name="tiny"), deltas=[(delta, 0.0, None)])
    a = run_ifeval(PlainModel(user, tok), items, tmp_path / "plain", checker, max_new_tokens=5)
    b = run_ifeval(zero, items, tmp_path / "zero", checker, max_new_tokens=5)
    assert a == b
    assert (tmp_path / "plain" / "responses.jsonl").read_text() == (tmp_path / "zero" / "responses.jsonl").read_text()


def test_transplanted_delta_steers_the_suite(tmp_path, checker, items, user, tok):
    from crossmodel.steer import transplant

    target = SimpleNamespace(model=user, tokenizer=tok, name="tiny")
    source = DeltaModel.create(vocabulary_of=make_tokenizer(vocab_size=280), layers=1, d_model=32, heads=2, seed=1)
    moved, _ = transplant(source, target)  # now a delta in the user's own vocabulary: no map
    summary = run_ifeval(steer(target, deltas=[(moved, 1.0, None)]), items, tmp_path, checker, max_new_tokens=5)
    assert summary["prompts"] == 3 and len((tmp_path / "responses.jsonl").read_text().splitlines()) == 3


# ---- CLI end to end, report and paired test -----------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory, user, tok):
    """A tiny user model and a cross-vocabulary delta with its token map, on disk."""
    root = tmp_path_factory.mktemp("ifeval-cli")
    user.save_pretrained(root / "user")
    tok.save_pretrained(root / "user")
    other = make_tokenizer(vocab_size=280)
    DeltaModel.create(vocabulary_of=other, layers=1, d_model=32, heads=2, seed=1).save(root / "delta")
    TokenMap.build(tok, other).save(root / "map")
    return root


def test_cli_cross_vocabulary_delta_report_and_paired_comparison(tmp_path, saved, checker):
    data = _write(tmp_path / "items.jsonl", ITEMS)
    runner = CliRunner()
    args = ["eval", "--model", str(saved / "user"), "--suite", "ifeval", "--data", str(data), "--max-new-tokens",
            "5", "--nltk-data", str(NLTK_DATA), "--delta", str(saved / "delta"), "--map", str(saved / "map"),
            "--alpha", "2"]
    first = runner.invoke(app, args + ["--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    assert "prompt_level_loose_acc" in first.output and "per_instruction_type" not in first.output
    out = tmp_path / "a"
    results = json.loads((out / "results.json").read_text())
    assert set(results["variants"]) == {"base", "steered"}
    for variant in ("base", "steered"):
        assert len((out / variant / "responses.jsonl").read_text().splitlines()) == 3
    report = (out / "report.md").read_text()
    assert "Per instruction type" in report and "McNemar" in report and "| base | steered | 3 |" in report
    assert (out / "ifeval_types.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second run over the same prompts: paired against the first run's columns
    plain = runner.invoke(app, args[:-6] + ["--out", str(tmp_path / "b")])
    assert plain.exit_code == 0, plain.output
    compared = runner.invoke(app, ["report", str(out), str(tmp_path / "b")])
    assert compared.exit_code == 0, compared.output
    assert "| a:base | a:steered | 3 |" in compared.output and "| a:base | b:base | 3 | " in compared.output


def test_plain_prompt_format_reaches_every_variant_of_an_instruct_model(tmp_path, saved, tok):
    from crossmodel.eval.runner import EvalConfig, load_variants

    instruct = tmp_path / "instruct"
    chat = "{% for m in messages %}<|user|>{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<|bot|>{% endif %}"
    make_model(tok, context=64).save_pretrained(instruct)
    tok.chat_template = chat
    try:
        tok.save_pretrained(instruct)
    finally:
        tok.chat_template = None

    plain_delta = tmp_path / "plain-delta"  # the same delta, recorded as trained in the plain format
    shutil.copytree(saved / "delta", plain_delta)
    record = json.loads((plain_delta / "crossmodel.json").read_text())
    (plain_delta / "crossmodel.json").write_text(json.dumps({**record, "chat_template": PLAIN_CHAT_TEMPLATE}))

    def prompts(prompt_format: str, delta: Path = saved / "delta") -> dict[str, str]:
        config = EvalConfig(model=str(instruct), suite="ifeval", data=("x.jsonl",), out=str(tmp_path / "o"),
                            deltas=(str(delta),), maps=(str(saved / "map"),), prompt_format=prompt_format)
        variants = load_variants(config)
        return {"base": tok.decode(variants["base"].prompt_ids("Hi there", chat=True)),
                "steered": variants["steered"].prompt_texts(["Hi there"], chat=True)[0]}

    assert all("<|bot|>" in text and "Answer:" not in text for text in prompts("own").values())
    assert all(text.endswith("Question: Hi there\nAnswer:") for text in prompts("plain").values())
    # auto: the model's own format here, as the delta is of another vocabulary and reads its own format anyway
    assert prompts("auto") == prompts("own") and prompts("auto", plain_delta) == prompts("own", plain_delta)
    # ... and the plain format for a plain-format delta in the model's own vocabulary (it reads the user's tokens)
    from crossmodel.eval.runner import resolve_prompt_format

    assert resolve_prompt_format("auto", [str(plain_delta)]) == "plain"
    assert resolve_prompt_format("auto", [str(plain_delta)], ["-"]) == "plain"
    assert resolve_prompt_format("auto", [str(plain_delta)], [str(saved / "map")]) == "own"
    assert resolve_prompt_format("auto", [str(saved / "delta")]) == "own"
    assert resolve_prompt_format("own", [str(plain_delta)]) == "own" and resolve_prompt_format("auto", []) == "own"
    with pytest.raises(ValueError, match="prompt_format='chatml'; choose one of auto, own, plain"):
        EvalConfig(model="m", suite="ifeval", data=("x",), out="o", prompt_format="chatml")


def _run_dir(root: Path, name: str, outcomes: dict[str, list[bool]]) -> Path:
    run = root / name
    variants = {}
    for variant, passed in outcomes.items():
        (run / variant).mkdir(parents=True)
        records = [{"key": k, "prompt": f"p{k}", "prompt_loose": p} for k, p in enumerate(passed)]
        _write(run / variant / "responses.jsonl", records)
        variants[variant] = {"prompt_level_loose_acc": sum(passed) / len(passed)}
    (run / "results.json").write_text(json.dumps({"config": {}, "suite": "ifeval", "variants": variants}))
    return run


def test_mcnemar_and_paired_difference_by_hand(tmp_path):
    # 10 prompts: both pass 3, A only 1, B only 5, neither 1
    a = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    b = [1, 1, 1, 0, 1, 1, 1, 1, 1, 0]
    r = paired_comparison(a, b)
    assert (r["only_a"], r["only_b"], r["n"]) == (1, 5, 10)
    assert r["p_mcnemar"] == pytest.approx(2 * (1 + 6) / 2 ** 6)  # 2·P(X ≤ 1), X ~ Bin(6, 1/2) = 0.21875
    assert r["difference"] == pytest.approx(0.4)
    # d = (0,0,0,-1,1,1,1,1,1,0): mean 0.4, Σ(d-0.4)² = 6 - 10·0.16 = 4.4, sd² = 4.4/9, SE = sqrt(4.4/9/10)
    assert r["se"] == pytest.approx((4.4 / 9 / 10) ** 0.5)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    with pytest.raises(ValueError, match="same items"):
        paired_comparison([True], [True, False])
    table = compare_runs([_run_dir(tmp_path, "x", {"base": a}), _run_dir(tmp_path, "y", {"base": b}),
                          _run_dir(tmp_path, "z", {"base": b[:4]})])
    assert "| x:base | y:base | 10 | 0.400 | 0.800 | +0.400 | 0.221 | 1 | 5 | 0.219 |" in table
    assert "z:base is not paired with x:base: they answered different prompts (4 and 10)" in table


# ---- CLI errors: one line, nothing written -------------------------------------------------------------------
@pytest.mark.parametrize("case, words", [
    ("missing", ["IFEval data", "does not exist"]),
    ("malformed", ["items.jsonl:2", "not valid JSON"]),
    ("no-nltk", ["--nltk-data", "holds no tokenizers/punkt_tab"]),
])
def test_cli_errors_are_one_line(tmp_path, saved, case, words):
    data = tmp_path / "items.jsonl"
    if case == "malformed":
        data.write_text(json.dumps(ITEMS[0]) + "\n{oops\n")
    elif case == "no-nltk":
        _write(data, ITEMS)
    nltk_data = tmp_path / "empty" if case == "no-nltk" else NLTK_DATA
    result = CliRunner().invoke(app, ["eval", "--model", str(saved / "user"), "--suite", "ifeval", "--data", str(data),
                                      "--out", str(tmp_path / "out"), "--nltk-data", str(nltk_data)])
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "Traceback" not in result.output, result.output
    assert all(w in errors[0] for w in words), errors[0]
    assert not (tmp_path / "out").exists()
