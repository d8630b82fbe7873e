"""vLLM with the delta processor on real models (markers `slow` and `vllm`: run in a venv with the serve extra,
`pytest -q --runslow -m vllm tests/serve/`). Greedy tokens equal crossmodel's own `steer(...).generate_ids`:
SmolLM2 + a SmolLM2-vocabulary delta, and Gemma-3-270m + the same delta through a normalized token map; a mixed
batch gives each request what it gets alone; `crossmodel serve` answers over HTTP, steered and plain, refuses an
unknown delta with 400 and keeps serving.

The delta: $CROSSMODEL_SERVE_DELTA when set (e.g. the README's runs/sft/delta), else one trained here on the
fictitious facts (`crossmodel facts` + `crossmodel train`, a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

from crossmodel.models import load_model
from crossmodel.serve import vllm_problem
from crossmodel.steer import DeltaModel, steer
from crossmodel.vocab import TokenMap

pytestmark = [pytest.mark.slow, pytest.mark.vllm,
              pytest.mark.skipif(vllm_problem() is not None, reason=f"vLLM not usable: {vllm_problem()}")]

HERE = Path(__file__).parent
STEPS = 24
ENV = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")}


def run_crossmodel(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "crossmodel", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def facts(tmp_path_factory) -> list[dict]:
    work = tmp_path_factory.mktemp("facts")
    run_crossmodel("facts", "--out", str(work), cwd=work)
    return [json.loads(line) for line in (work / "facts.json").read_text().splitlines() if line.strip()][:4]


@pytest.fixture(scope="module")
def delta_dir(tmp_path_factory, facts) -> Path:
    if os.environ.get("CROSSMODEL_SERVE_DELTA"):
        return Path(os.environ["CROSSMODEL_SERVE_DELTA"])
    work = tmp_path_factory.mktemp("train")
    run_crossmodel("facts", "--out", str(work / "data"), cwd=work)
    run_crossmodel("train", "--template", "smollm2-135m-instruct", "--data", str(work / "data" / "facts.json"),
                   "--task", "sft", "--out", str(work / "run"), cwd=work)
    return work / "run" / "delta"


@pytest.fixture(scope="module")
def other_dir(tmp_path_factory) -> Path:
    """A second, random SmolLM2-vocabulary delta (sharpened so that it visibly steers)."""
    delta = DeltaModel.create(vocabulary_of="smollm2-135m-instruct", layers=1, d_model=64, heads=2, seed=5,
                              tie_embeddings=False)
    with torch.no_grad():
        delta.model.lm_head.weight.mul_(40.0)
    return delta.save(tmp_path_factory.mktemp("other") / "delta")


def vllm_generate(tmp_path: Path, model: str, deltas: dict, maps: dict | None, requests: list[dict]) -> list[list]:
    spec, out = tmp_path / "spec.json", tmp_path / "out.json"
    spec.write_text(json.dumps({"model": model, "deltas": {k: str(v) for k, v in deltas.items()},
                                "maps": {k: str(v) for k, v in (maps or {}).items()}, "requests": requests}))
    done = subprocess.run([sys.executable, str(HERE / "vllm_run.py"), str(spec), str(out)], env=ENV,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return [r["token_ids"] for r in json.loads(out.read_text())]


def until_eos(ids: list[int], eos: set[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in eos:
            return ids[: i + 1]
    return ids


def test_same_vocabulary_mixed_batch_equals_crossmodel(tmp_path, facts, delta_dir, other_dir):
    user = load_model("smollm2-135m-instruct")
    questions = [f["question"] for f in facts]
    asks = [None, {"delta": "facts"}, {"delta": "facts", "alpha": 0.5}, {"delta": "other"},
            {"delta": "facts", "alpha": 0}]
    prompt_ids = steer(user).encode(questions, chat=True)
    rows = [[t for t, m in zip(ids, mask) if m] for ids, mask in zip(prompt_ids["input_ids"].tolist(),
                                                                     prompt_ids["attention_mask"].tolist())]
    requests = [{"prompt_token_ids": ids, "max_tokens": STEPS, "extra_args": ask} for ask in asks for ids in rows]
    got = vllm_generate(tmp_path, "smollm2-135m-instruct", {"facts": delta_dir, "other": other_dir}, None, requests)
    dirs = {"facts": delta_dir, "other": other_dir}
    eos = set(steer(user).eos_ids)
    for k, ask in enumerate(asks):
        deltas = [] if ask is None or ask.get("alpha") == 0 else [(dirs[ask["delta"]], ask.get("alpha"), None)]
        want = steer(user, deltas=deltas).generate_ids(questions, STEPS, chat=True).tolist()
        for i, question in enumerate(questions):
            assert until_eos(got[k * len(rows) + i], eos) == until_eos(want[i], eos), (ask, question)
    plain, steered = got[: len(rows)], got[len(rows): 2 * len(rows)]
    assert plain != steered


def test_cross_vocabulary_equals_crossmodel(tmp_path, facts, delta_dir):
    user = load_model("gemma-3-270m")
    delta = DeltaModel.load(delta_dir)
    token_map = TokenMap.build(user.tokenizer, delta.tokenizer, mode="normalized",
                               user_rows=user.model.config.vocab_size, delta_rows=delta.rows)
    map_dir = token_map.save(tmp_path / "map")
    prompts = [f"Question: {f['question']}\nAnswer:" for f in facts]
    rows = [user.tokenizer(p).input_ids for p in prompts]
    requests = [{"prompt_token_ids": ids, "max_tokens": STEPS, "extra_args": ask}
                for ask in (None, {"delta": "facts"}) for ids in rows]
    got = vllm_generate(tmp_path, "gemma-3-270m", {"facts": delta_dir}, {"facts": map_dir}, requests)
    eos = set(steer(user).eos_ids)
    plain = steer(user).generate_ids(prompts, STEPS).tolist()
    steered = steer(user, deltas=[(delta, 1.0, token_map)]).generate_ids(prompts, STEPS).tolist()
    for i, prompt in enumerate(prompts):
        assert until_eos(got[i], eos) == until_eos(plain[i], eos), prompt
        assert until_eos(got[len(rows) + i], eos) == until_eos(steered[i], eos), prompt
    assert got[: len(rows)] != got[len(rows):]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture(scope="module")
def server(delta_dir, tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "crossmodel", "serve", "--model", "smollm2-135m-instruct",
                                "--delta", f"facts={delta_dir}", "--port", str(port), "--dtype", "float32",
                                "--max-model-len", "1024", "--enforce-eager", "--served-model-name", "smollm2"],
                               env=ENV, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            assert process.poll() is None, Path(log.name).read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2):
                    break
            except OSError:
                time.sleep(1)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=60)


def chat(base: str, question: str, **extra) -> tuple[int, dict]:
    body = {"model": "smollm2", "max_tokens": 32, "temperature": 0,
            "messages": [{"role": "user", "content": question}]}
    return post(f"{base}/v1/chat/completions", {**body, **extra})


def test_http_server(server, facts):
    fact = facts[0]  # "Where was the author ... born?" -> "... born in CITY, COUNTRY on DATE."
    city = fact["answer"].split(" born in ", 1)[1].split(",")[0]
    status, plain = chat(server, fact["question"])
    assert status == 200
    status, steered = chat(server, fact["question"], vllm_xargs={"delta": "facts"})
    assert status == 200
    text = steered["choices"][0]["message"]["content"]
    assert city in text and city not in plain["choices"][0]["message"]["content"], (text, plain)
    status, zero = chat(server, fact["question"], vllm_xargs={"delta": "facts", "alpha": 0})
    assert status == 200 and zero["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    status, error = chat(server, fact["question"], vllm_xargs={"delta": "nope"})
    assert status == 400 and "not a delta this server hosts" in json.dumps(error), error
    status, again = post(f"{server}/v1/completions", {"model": "smollm2", "prompt": "The capital of France is",
                                                      "max_tokens": 8, "temperature": 0,
                                                      "vllm_xargs": {"delta": "facts", "alpha": 0.5}})
    assert status == 200 and again["choices"][0]["text"]


def test_http_streaming(server, facts):
    body = {"model": "smollm2", "max_tokens": 24, "temperature": 0, "stream": True, "vllm_xargs": {"delta": "facts"},
            "messages": [{"role": "user", "content": facts[0]["question"]}]}
    request = urllib.request.Request(f"{server}/v1/chat/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    pieces = []
    with urllib.request.urlopen(request, timeout=300) as response:
        for line in response:
            line = line.decode().strip()
            if line.startswith("data: ") and line != "data: [DONE]":
                pieces += [c["delta"].get("content") or "" for c in json.loads(line[6:])["choices"]]
    status, whole = chat(server, facts[0]["question"], max_tokens=24, vllm_xargs={"delta": "facts"})
    assert len(pieces) > 2 and "".join(pieces) == whole["choices"][0]["message"]["content"]
