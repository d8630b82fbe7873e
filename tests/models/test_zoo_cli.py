"""`crossmodel zoo ...` and the plain `crossmodel generate` on a tiny local model."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from crossmodel.cli import app
from crossmodel.models import ZOO, generate_text, load_model

runner = CliRunner()


def test_zoo_list_shows_every_model(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSMODEL_HOME", str(tmp_path))
    result = runner.invoke(app, ["zoo", "list"])
    assert result.exit_code == 0, result.output
    for name, entry in ZOO.items():
        assert name in result.output and f"{entry.vocab_size:,}" in result.output
    assert "yes" not in result.output  # an empty cache has nothing pulled


def test_zoo_pull_unknown_name_lists_known_ones():
    result = runner.invoke(app, ["zoo", "pull", "llama-9000"])
    assert result.exit_code == 1
    assert "unknown zoo model 'llama-9000'" in result.output and "smollm2-135m-instruct" in result.output


def test_generate_prints_the_continuation(tiny_dir):
    result = runner.invoke(app, ["generate", "--model", str(tiny_dir), "--prompt", "The capital of",
                                 "--max-new-tokens", "4", "--no-chat"])
    assert result.exit_code == 0, result.output
    loaded = load_model(tiny_dir)
    expected = generate_text(loaded.model, loaded.tokenizer, "The capital of", max_new_tokens=4)
    assert result.stdout.rstrip("\n").endswith(expected)


def test_generate_chat_on_a_base_model_uses_the_plain_format(tiny_base_dir):
    chat = runner.invoke(app, ["generate", "--model", str(tiny_base_dir), "--prompt", "hi", "--chat"])
    plain = runner.invoke(app, ["generate", "--model", str(tiny_base_dir), "--prompt", "Question: hi\nAnswer:",
                                "--no-chat"])
    assert chat.exit_code == 0 and chat.output.splitlines()[-1] == plain.output.splitlines()[-1]
    default = runner.invoke(app, ["generate", "--model", str(tiny_base_dir), "--prompt", "hi"])
    assert default.output.splitlines()[-1] == chat.output.splitlines()[-1]  # --chat is the default, as in eval


def test_generate_missing_model_path():
    result = runner.invoke(app, ["generate", "--model", "./no/such/dir", "--prompt", "hi"])
    assert result.exit_code == 1 and "model path not found" in result.output


def test_zoo_path_prints_the_directory_alone_on_the_last_line(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSMODEL_HOME", str(tmp_path))
    folder = tmp_path / "zoo" / "gemma-3-270m"
    folder.mkdir(parents=True)
    manifest = {"files": {}, "gguf_sha256": ZOO["gemma-3-270m"].gguf_sha256}
    (folder / "zoo.json").write_text(json.dumps(manifest))  # a finished pull (nothing to fetch in this test)
    result = runner.invoke(app, ["zoo", "path", "gemma-3-270m"])
    assert result.exit_code == 0 and result.stdout.splitlines()[-1] == str(folder)
    listing = runner.invoke(app, ["zoo", "list"]).output
    assert any(line.count("gemma-3-270m") and "yes" in line for line in listing.splitlines())


def test_zoo_list_says_damaged_for_a_truncated_pull(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSMODEL_HOME", str(tmp_path))
    folder = tmp_path / "zoo" / "gemma-3-270m"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"x" * 50)
    manifest = {"files": {"model.safetensors": {"bytes": 100, "sha256": "0" * 64}},
                "gguf_sha256": ZOO["gemma-3-270m"].gguf_sha256}
    (folder / "zoo.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["zoo", "list"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "gemma-3-270m" in line)
    assert "damaged" in row and "yes" not in row
    assert "crossmodel zoo pull gemma-3-270m --force" in result.output and "truncated" in result.output
