"""The demo recipe end to end on tiny random models (two vocabularies), its report, and the steered template it
trains the unlearning delta against; plus the real `crossmodel demo` run (slow)."""

import dataclasses
import json

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

from crossmodel.models import PLAIN_CHAT_TEMPLATE, PLAIN_PROMPT
from crossmodel.demo import DemoConfig, _train_config, knowledge_table, run_demo, unlearning_table
from crossmodel.eval.answerers import Answerer, QuestionAnswerer
from crossmodel.train import StackedTemplate, train_or_reuse
from crossmodel.train.combined import hidden_states, output_head
from crossmodel.train.facts import generate_facts
from .tiny import tiny_llama


def _tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    text = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in generate_facts(8, seed=0)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>")


def _llama(tokenizer, hidden: int, seed: int) -> LlamaForCausalLM:
    return tiny_llama(len(tokenizer), hidden=hidden, context=512, seed=seed, pad_token_id=0, eos_token_id=1,
                      bos_token_id=None)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """A template and a user model of another vocabulary, saved as HF dirs (what load_model reads)."""
    root = tmp_path_factory.mktemp("zoo")
    dirs = {}
    for name, vocab, hidden, seed in (("template", 400, 48, 1), ("other", 330, 32, 2)):
        tok = _tokenizer(vocab)
        _llama(tok, hidden, seed).save_pretrained(root / name)
        tok.save_pretrained(root / name)
        dirs[name] = str(root / name)
    return dirs


def _config(out, dirs, **kw) -> DemoConfig:
    return DemoConfig(out=str(out), template=dirs["template"], models=(dirs["template"], dirs["other"]), facts=2,
                      forget=1, epochs=3, unlearn_epochs=1, lr=5e-3, delta_layers=1, delta_d_model=32,
                      max_new_tokens=3, batch_size=5, **kw)


def test_demo_writes_report_and_tables(tmp_path, model_dirs):
    results = run_demo(_config(tmp_path, model_dirs), log=lambda _: None)
    for name in ("report.md", "results.json", "facts.jsonl", "forget.jsonl", "retain.jsonl", "template.png",
                 "other.png"):
        assert (tmp_path / name).is_file(), name
    assert [len(open(tmp_path / n).readlines()) for n in ("facts.jsonl", "forget.jsonl", "retain.jsonl")] == [10, 5, 5]
    assert json.loads((tmp_path / "results.json").read_text())["models"][1]["model"] == model_dirs["other"]
    own, other = results["models"]
    assert own["map"] is None and other["map"]["mapped"] > 0  # a token map was built for the other vocabulary only
    for r in results["models"]:
        assert set(r["variants"]) == {"before", "knowledge", "knowledge+unlearn"}
        for v in r["variants"].values():
            assert v["all"]["items"] == 10 and v["forget"]["items"] == 5 and v["retain"]["items"] == 5
            assert 0.0 <= v["all"]["rouge_l_recall"] <= 1.0 and len(v["answers"]) == 10
    # the knowledge delta was trained on these facts next to this template: their NLL must fall
    assert own["variants"]["knowledge"]["all"]["nll"] < own["variants"]["before"]["all"]["nll"]
    table = knowledge_table(results).splitlines()
    assert len(table) == 4 and "template's" in table[2] and "other (map:" in table[3]
    assert len(unlearning_table(results).splitlines()) == 4
    report = (tmp_path / "report.md").read_text()
    assert "## Knowledge transfer" in report and "## Unlearning" in report and "![" in report


def test_train_or_reuse_reuses_a_finished_run(tmp_path, model_dirs):
    from crossmodel.models import load_model

    template = load_model(model_dirs["template"])
    (tmp_path / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in generate_facts(1, seed=0)))
    cfg = _train_config(_config(tmp_path, model_dirs), tmp_path / "run", data=str(tmp_path / "facts.jsonl"), epochs=1,
                        lr=1e-3)
    first = train_or_reuse(cfg, template)
    weights = tmp_path / "run" / "delta" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    again = train_or_reuse(cfg, template)
    assert weights.stat().st_mtime_ns == stamp  # same settings: loaded, not retrained
    for a, b in zip(first.model.parameters(), again.model.parameters()):
        torch.testing.assert_close(a, b)
    train_or_reuse(dataclasses.replace(cfg, seed=1), template)
    assert weights.stat().st_mtime_ns != stamp  # other settings: trained again


def test_question_answerer_reads_the_demo_format(model_dirs):
    """Bare TOFU questions/answers (as eval's TOFU suite passes them) are scored and answered exactly as the demo's
    formatted items."""
    from crossmodel.models import load_model
    from crossmodel.steer import steer

    steered = steer(load_model(model_dirs["template"]))
    facts = generate_facts(1, seed=0)[:3]
    questions, answers = [f["question"] for f in facts], [f["answer"] for f in facts]
    bare, formatted = QuestionAnswerer(steered, batch_size=2), Answerer(steered, batch_size=2)
    got = bare.score(questions, answers)
    want = formatted.score([PLAIN_PROMPT.format(question=q) for q in questions], [" " + a for a in answers])
    assert [len(g) for g in got] == [len(w) for w in want]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    assert bare.generate(questions, max_new_tokens=4) == formatted.generate(
        [PLAIN_PROMPT.format(question=q) for q in questions], max_new_tokens=4)


def test_stacked_template_is_template_plus_delta_under_the_deltas_rule(model_dirs):
    tok = PreTrainedTokenizerFast.from_pretrained(model_dirs["template"])
    template, delta = _llama(tok, 48, 1), _llama(tok, 32, 3)
    ids = torch.tensor([tok.encode("Question: Where was the author born?")])
    mask = torch.ones_like(ids)
    z_t, z_d = template(input_ids=ids).logits, delta(input_ids=ids).logits
    for rule, want in (("basenormalize", z_t.log_softmax(-1) + 0.5 * z_d),
                       ("normalize", z_t.log_softmax(-1) + 0.5 * z_d.log_softmax(-1))):
        stacked = StackedTemplate(template, delta, alpha=0.5, rule=rule)
        got = output_head(stacked)(hidden_states(stacked, ids, mask))  # what the training loop computes
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not any(p.requires_grad for p in stacked.parameters())


def test_prompt_is_the_training_format(model_dirs):
    """Evaluation prompts must be exactly what the deltas saw in training before each answer."""
    from crossmodel.train.templates import encode_pair

    tok = PreTrainedTokenizerFast.from_pretrained(model_dirs["template"])
    ids, labels = encode_pair(tok, [{"role": "user", "content": "Who?"}], "Amara.", PLAIN_CHAT_TEMPLATE, 64)
    prompt = [i for i, label in zip(ids, labels) if label == -100]
    assert prompt == tok.encode(PLAIN_PROMPT.format(question="Who?"))
    assert tok.decode(ids[len(prompt):]) == " Amara.<eos>\n"  # the answer keeps its leading space


@pytest.mark.parametrize("bad, match", [({"forget": 3}, "forget"), ({"models": ()}, "models"),
                                        ({"map_mode": "bytes"}, "map_mode"), ({"epochs": 0}, "epochs")])
def test_config_errors_name_the_setting(bad, match):
    with pytest.raises(ValueError, match=match):
        DemoConfig(**{"facts": 3, **bad})


@pytest.mark.slow
def test_real_demo_transfers_knowledge(tmp_path):
    """The default demo on the zoo models: the delta raises ROUGE-L for the two models of other vocabularies, and
    issue 16's goal 4 holds on every model: the unlearning delta brings the forgotten authors back to where the
    model was before it learned them (+ 0.10), keeps 90 % of the kept authors' ROUGE-L, and at most 10 % of the
    forgotten answers are degenerate."""
    results = run_demo(DemoConfig(out=str(tmp_path)), log=print)
    rows = {r["model"]: r["variants"] for r in results["models"]}
    for name in ("gemma-3-270m", "qwen2.5-coder-0.5b-instruct"):
        assert rows[name]["knowledge"]["all"]["rouge_l_recall"] > rows[name]["before"]["all"]["rouge_l_recall"]
    for name, v in rows.items():
        before, known, unlearned = v["before"], v["knowledge"], v["knowledge+unlearn"]
        assert unlearned["forget"]["rouge_l_recall"] <= before["forget"]["rouge_l_recall"] + 0.10, name
        assert unlearned["retain"]["rouge_l_recall"] >= 0.9 * known["retain"]["rouge_l_recall"], name
        assert unlearned["forget"]["degenerate_rate"] <= 0.10, name


def test_unknown_model_fails_before_any_training(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'nosuch'"):
        run_demo(DemoConfig(out=str(tmp_path / "demo"), models=("nosuch",)))
    assert not (tmp_path / "demo").exists()
