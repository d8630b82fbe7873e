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
    result = runner.invoke(app, ["generate", "--no-chat", *map(str, args)])  # raw continuations of the prompts
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


def _one_error(code: int, output: str, *words: str) -> str:
    """Exit 1 with exactly one `error:` line, the last one, naming every word; no traceback."""
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and output.strip().splitlines()[-1] == errors[0], output
    assert "Traceback" not in output
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


def _damaged_copy(src, dst, name, keep_bytes=None, text=None):
    import shutil

    shutil.copytree(src, dst)
    if keep_bytes is not None:
        (dst / name).write_bytes((src / name).read_bytes()[:keep_bytes])
    elif text is not None:
        (dst / name).write_text(text)
    else:
        (dst / name).unlink()
    return dst


def test_damaged_model_delta_and_tokenizer_files_are_named(dirs, tmp_path):
    user = _damaged_copy(dirs / "user", tmp_path / "user", "model.safetensors", keep_bytes=5000)
    _one_error(*_run("--model", user, "--prompt", "hi"), str(user / "model.safetensors"), "truncated",
               "save_pretrained")
    delta = _damaged_copy(dirs / "delta", tmp_path / "delta", "model.safetensors", keep_bytes=5000)
    _one_error(*_run("--model", dirs / "user", "--prompt", "hi", "--delta", delta),
               str(delta / "model.safetensors"), "crossmodel train")
    text = (dirs / "user" / "tokenizer.json").read_text()
    broken = _damaged_copy(dirs / "user", tmp_path / "tok", "tokenizer.json", text=text[: len(text) // 2])
    _one_error(*_run("--model", broken, "--prompt", "hi"), str(broken), "tokenizer.json")
    missing = _damaged_copy(dirs / "user", tmp_path / "notok", "tokenizer.json")
    _one_error(*_run("--model", missing, "--prompt", "hi"), str(missing), "no tokenizer")
    bad_map = _damaged_copy(dirs / "map", tmp_path / "map", "token_map.safetensors", keep_bytes=100)
    _one_error(*_run("--model", dirs / "bpe", "--prompt", "hi", "--delta", dirs / "delta", "--map", bad_map),
               str(bad_map / "token_map.safetensors"), "crossmodel map")


@pytest.mark.parametrize("flags, words", [
    (["--alpha", "nan"], ["--alpha=nan", "finite"]),
    (["--alpha", "inf"], ["--alpha=inf"]),
    (["--alpha", "1e6"], ["--alpha=1000000.0", "100"]),
    (["--sample", "--temperature", "0"], ["temperature=0", "--sample"]),
    (["--temperature", "-1"], ["temperature=-1.0"]),
    (["--sample", "--top-p", "1.5"], ["top_p=1.5"]),
    (["--sample", "--top-k", "0"], ["top_k=0"]),
    (["--top-p", "0"], ["top_p=0.0"]),  # checked even when decoding greedily
    (["--stop", ""], ["stop strings must be non-empty"]),
])
def test_bad_decoding_flags_are_refused(dirs, flags, words):
    _one_error(*_run("--model", dirs / "user", "--prompt", "Hello", "--delta", dirs / "delta", *flags), *words)


def test_empty_prompt_and_non_utf8_prompts_file(dirs, tmp_path):
    _one_error(*_run("--model", dirs / "user", "--prompt", ""), "--prompt is empty")
    latin1 = tmp_path / "p.txt"
    latin1.write_bytes("Caf\xe9 au lait\n".encode("latin-1"))
    _one_error(*_run("--model", dirs / "user", "--prompts-file", latin1), str(latin1), "not UTF-8", "line 1")
    bom = tmp_path / "bom.jsonl"
    bom.write_text('{"prompt": "Hello"}\n{"prompt": ""}\n', encoding="utf-8-sig")
    _one_error(*_run("--model", dirs / "user", "--prompts-file", bom), f"{bom}:2", "non-empty")


def test_sample_alone_samples_at_temperature_one(dirs):
    args = ("--model", dirs / "user", "--prompt", "Hello", "--max-new-tokens", 12)
    code, sampled = _run(*args, "--sample", "--seed", 1)
    code2, explicit = _run(*args, "--temperature", 1.0, "--seed", 1)
    code3, greedy = _run(*args, "--temperature", 0)
    assert code == code2 == code3 == 0 and sampled == explicit and sampled != greedy


def test_chat_drops_the_oldest_exchanges_when_the_context_is_full(dirs, char_tok):
    # one character = one token and a 256-token context: three 70-character messages cannot all fit
    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    user = dirs / "user"
    tok = copy.deepcopy(char_tok)
    tok.chat_template = template
    tok.save_pretrained(user)
    long_line = "tell me more about the quick brown fox and the lazy dog, please. " + "x" * 5
    too_long = "y" * 300
    typed = "\n".join([long_line, long_line, too_long, long_line, ""]) + "\n"
    result = runner.invoke(app, ["chat", "--model", str(user), "--max-new-tokens", "8"], input=typed)
    assert result.exit_code == 0, result.output
    replies = [line for line in result.stdout.splitlines() if "model> " in line]
    assert len(replies) == 3  # every message that fits alone got an answer
    assert "dropped the 1 oldest exchange(s)" in result.stdout
    assert "too long even on its own" in result.stdout and "256 tokens" in result.stdout
