"""`crossmodel serve` before vLLM starts (no vLLM needed): flags, the install check and its exact fix, the
pre-flight check of every delta against the served model, and the vLLM server command (--dry-run)."""

from __future__ import annotations

import importlib.util
import shlex
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from crossmodel.cli import app
from crossmodel.serve import PROCESSOR, ServerOptions, launch, serve_config, server_command
from crossmodel.steer import DeltaModel
from crossmodel.vocab import TokenMap
from ..steer.conftest import make_model

runner = CliRunner()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, char_tok, bpe_tok):
    root = tmp_path_factory.mktemp("serve-cli")
    make_model(char_tok, seed=1).save_pretrained(root / "user")
    char_tok.save_pretrained(root / "user")
    user = SimpleNamespace(model=make_model(char_tok, seed=1), tokenizer=char_tok)
    DeltaModel.create(vocabulary_of=user, layers=1, d_model=32, heads=2, seed=3).save(root / "same")
    DeltaModel.create(vocabulary_of=bpe_tok, layers=1, d_model=32, heads=2, seed=4).save(root / "cross")
    TokenMap.build(char_tok, bpe_tok).save(root / "map")
    TokenMap.build(bpe_tok, char_tok).save(root / "wrong-map")
    return root


@pytest.fixture
def vllm_ok(monkeypatch):
    monkeypatch.setattr(launch, "vllm_problem", lambda: None)


def serve(*args) -> tuple[int, str]:
    result = runner.invoke(app, ["serve", *map(str, args)])
    return result.exit_code, result.output


def test_dry_run_prints_the_vllm_command(dirs, vllm_ok):
    code, out = serve("--model", dirs / "user", "--delta", f"a={dirs / 'same'}", "--delta", f"b={dirs / 'cross'}",
                      "--map", f"b={dirs / 'map'}", "--port", 8123, "--dtype", "float32", "--dry-run",
                      "--", "--max-num-seqs", "4")
    assert code == 0, out
    argv = shlex.split(out.strip().splitlines()[-1])
    assert argv[argv.index("--logits-processors") + 1] == PROCESSOR
    assert argv[argv.index("--model") + 1] == str(dirs / "user")
    assert argv[argv.index("--port") + 1] == "8123" and argv[-2:] == ["--max-num-seqs", "4"]
    assert "deltas ['a', 'b']" in out


@pytest.mark.parametrize("args, message", [
    (["--delta", "facts"], "--delta 'facts' must be NAME=DIR"),
    ([], "give at least one --delta NAME=DIR"),
    (["--delta", "a=/no/such/dir"], "--delta a=/no/such/dir: no such directory"),
    (["--delta", "a={same}", "--port", "0"], "--port 0 must be in 1..65535"),
    (["--delta", "b={cross}"], "crossmodel map --user MODEL --delta"),
    (["--delta", "b={cross}", "--map", "b={wrong}"], "is not the one this token map was built for"),
    (["--delta", "a={same}", "--map", "c={map}"], "--map names ['c'] that no --delta hosts"),
])
def test_mistakes_are_one_line(dirs, vllm_ok, args, message):
    paths = {"same": dirs / "same", "cross": dirs / "cross", "map": dirs / "map", "wrong": dirs / "wrong-map"}
    code, out = serve("--model", dirs / "user", *[a.format(**paths) for a in args], "--dry-run")
    last = out.strip().splitlines()[-1]  # (after transformers' weight-loading progress bar)
    assert code == 1 and last.startswith("error: ") and message in last, out
    assert "Traceback" not in out


def test_missing_vllm_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    problem = launch.vllm_problem()
    assert "vLLM is not installed" in problem and launch.INSTALL["cpu"] in problem


def test_broken_companion_build_says_to_uninstall(monkeypatch):
    real_find, real_import = importlib.util.find_spec, importlib.import_module

    def fake_import(name, *args):
        if name == "torchvision":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real_import(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name in ("vllm", "torchvision") else real_find(name, *a))
    monkeypatch.setattr(importlib, "import_module", fake_import)
    problem = launch.vllm_problem()
    assert "operator torchvision::nms does not exist" in problem
    assert "pip uninstall -y torchvision torchaudio torchcodec" in problem


def test_server_command_options():
    argv = server_command("/m", ServerOptions(max_model_len=1024, enforce_eager=True, served_model_name="s"))
    assert argv[argv.index("--max-model-len") + 1] == "1024" and "--enforce-eager" in argv
    assert argv[argv.index("--served-model-name") + 1] == "s" and argv[argv.index("--host") + 1] == "127.0.0.1"


def _calibration(folder, model, delta, alpha: float):
    """A calibration.json for this model and delta, written by hand (what `crossmodel calibrate` records)."""
    import json

    from crossmodel.eval.calibration import fingerprints

    folder.mkdir()
    record = {"schema_version": 1, "alpha": alpha, "reason": "by hand", **fingerprints(str(model), delta)}
    (folder / "calibration.json").write_text(json.dumps(record))
    return folder


def test_calibration_sets_a_hosted_deltas_default_alpha(dirs, vllm_ok, tmp_path):
    from crossmodel.models.load import load_hf_tokenizer
    from crossmodel.serve import DeltaHost

    cal = _calibration(tmp_path / "cal", dirs / "user", dirs / "same", 0.375)
    code, out = serve("--model", dirs / "user", "--delta", f"a={dirs / 'same'}", "--calibration", f"a={cal}",
                      "--dry-run")
    assert code == 0 and f"delta a: default α = 0.375 (calibration {cal})" in out, out
    config = serve_config({"a": dirs / "same"}, alphas={"a": 0.375})
    host = DeltaHost.load(config, load_hf_tokenizer(dirs / "user"), len(load_hf_tokenizer(dirs / "user")))
    assert host.hosted["a"].slot.alpha == 0.375  # requests that name no alpha get the calibrated one
    code, out = serve("--model", dirs / "user", "--delta", f"b={dirs / 'same'}", "--calibration", f"a={cal}",
                      "--dry-run")
    assert code == 1 and "--calibration names ['a'] that no --delta hosts" in out.strip().splitlines()[-1]
    other = _calibration(tmp_path / "other", dirs / "user", dirs / "cross", 0.5)
    code, out = serve("--model", dirs / "user", "--delta", f"a={dirs / 'same'}", "--calibration", f"a={other}",
                      "--dry-run")
    last = out.strip().splitlines()[-1]
    assert code == 1 and f"calibration {other} was made for delta {dirs / 'cross'}" in last, out
