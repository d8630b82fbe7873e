"""`crossmodel generate` with deltas and `crossmodel chat`, on tiny models saved as HF directories."""

import copy

import pytest
from typer.testing import CliRunner

from .conftest import make_model
from crossmodel.cli import app
from crossmodel.steer import DeltaModel, steer
from crossmodel.vocab import TokenMap

runner = CliRunner()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, char_tok, bpe_tok):
    root = tmp_path_factory.mktemp("cli")
    for name, tok, seed in (("user", char_tok, 1), ("bpe", bpe_tok, 2)):
        make_model(tok, seed=seed).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    user = type("U", (), {"model": make_model(char_tok, seed=1), "tokenizer": char_tok})()
    DeltaModel.create(vocabulary_of=user, layers=1, d_model=32, heads=2, seed=3, alpha=2.0).save(root / "delta")
    TokenMap.build(bpe_tok, char_tok).save(root / "map")
    return root


def _run(*args):
    result = runner.invoke(app, ["generate", *map(str, args)])
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_generate_with_and_without_delta(dirs):
    code, plain = _run("--model", dirs / "user", "--prompt", "Hello", "--max-new-tokens", 12)
    assert code == 0, plain
    code, zero = _run("--model", dirs / "user", "--prompt", "Hello", "--max-new-tokens", 12,
                      "--delta", dirs / "delta", "--alpha", 0)
    assert code == 0 and zero == plain
    code, steered = _run("--model", dirs / "user", "--prompt", "Hello", "--max-new-tokens", 12,
                         "--delta", dirs / "delta")
    assert code == 0 and steered != plain
    code, two = _run("--model", dirs / "user", "--prompt", "Hello", "--max-new-tokens", 12,
                     "--delta", dirs / "delta", "--delta", dirs / "delta", "--alpha", 1.0, "--alpha", 1.0)
    assert code == 0 and two == steered  # two deltas at 1.0 each = one at its saved 2.0 (same model)


def test_generate_cross_vocab_and_prompts_file(dirs, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello\nThe quick brown fox\n")
    code, out = _run("--model", dirs / "bpe", "--prompts-file", prompts, "--max-new-tokens", 8,
                     "--delta", dirs / "delta", "--map", dirs / "map")
    assert code == 0, out
    assert out.count("=== ") == 2
    code, out = _run("--model", dirs / "bpe", "--prompt", "Hello", "--delta", dirs / "delta")
    assert code == 1 and "crossmodel map" in out
    code, out = _run("--model", dirs / "user", "--prompt", "Hello", "--delta", dirs / "delta",
                     "--alpha", 1, "--alpha", 2, "--alpha", 3)
    assert code == 1 and "--alpha" in out
    code, out = _run("--model", dirs / "user", "--prompts-file", tmp_path / "missing.txt")
    assert code == 1 and "missing.txt" in out


def test_chat_streams_and_keeps_history(dirs, char_tok):
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    user = dirs / "user"
    tok = copy.deepcopy(char_tok)  # the session fixture stays template-free
    tok.chat_template = template
    tok.save_pretrained(user)
    result = runner.invoke(app, ["chat", "--model", str(user), "--max-new-tokens", "6"], input="hi\nmore\n\n")
    assert result.exit_code == 0, result.output
    replies = [line.split("model> ", 1)[1] for line in result.stdout.splitlines() if "model> " in line]
    assert len(replies) == 2
    from crossmodel.models import load_model
    steered = steer(load_model(str(user)))
    assert replies[0] == steered.generate(["hi"], 6, chat=True)[0]
