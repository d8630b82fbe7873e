"""Cross-model Control inside vLLM: a V1 logits processor that adds hosted deltas to the requests asking for one.

vLLM loads it by name (`LLM(logits_processors=[PROCESSOR])`, `vllm serve --logits-processors PROCESSOR`), builds
one instance per engine with `(vllm_config, device, is_pin_memory)`, calls `update_state` with the persistent
batch's changes before every step and `apply` on the float32 logits of the whole batch. A request opts in with
`SamplingParams(extra_args={"delta": "NAME", "alpha": 1.0})` (REST: `"vllm_xargs"`); `validate_params` rejects an
unknown name or a bad alpha before the request is queued, which the OpenAI server answers with HTTP 400.

This module imports vLLM; everything vLLM-free lives in config.py, rows.py and host.py.

    from vllm import LLM, SamplingParams
    from crossmodel.serve import steered_llm
    llm = steered_llm("smollm2-135m-instruct", {"facts": "runs/sft/delta"}, enforce_eager=True)
    llm.generate(["Where was Jovan Moravec born?"], SamplingParams(max_tokens=32, extra_args={"delta": "facts"}))
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

from crossmodel.models.load import load_hf_tokenizer
from crossmodel.serve.config import ENV_VAR, ServeConfig, delta_request
from crossmodel.serve.host import DeltaHost

if TYPE_CHECKING:
    from vllm.config import VllmConfig


@functools.cache
def _parsed(text: str) -> ServeConfig:
    return ServeConfig.from_json(text)


def current_config() -> ServeConfig:
    """The ServeConfig of this server. vLLM constructs the processor itself, in its engine process, and calls
    `validate_params` without an instance, so the environment (set by `crossmodel serve` / `steered_llm`, and
    inherited by vLLM's processes) is the one channel that reaches both."""
    if ENV_VAR not in os.environ:
        return ServeConfig.from_env(os.environ)  # raises, saying how to start a server with deltas
    return _parsed(os.environ[ENV_VAR])


class DeltaLogitsProcessor(LogitsProcessor):
    """Adds a hosted delta to each request that names one in its extra_args; other rows stay untouched."""

    def __init__(self, vllm_config: VllmConfig, device: torch.device, is_pin_memory: bool):
        model_config = vllm_config.model_config
        tokenizer = load_hf_tokenizer(model_config.tokenizer)
        self.host = DeltaHost.load(current_config(), tokenizer, model_config.get_vocab_size(), device)

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        """ValueError (HTTP 400) when extra_args name a delta this server does not host or a bad alpha."""
        delta_request(sampling_params.extra_args, current_config().names)

    def is_argmax_invariant(self) -> bool:
        """A delta changes which token is most likely, so greedy requests need it too."""
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        """Mirror the persistent batch's removed / added / moved requests."""
        if batch_update is None:
            return
        self.host.update(batch_update.removed,
                         [(index, params.extra_args, prompt_ids, output_ids)
                          for index, params, prompt_ids, output_ids in batch_update.added],
                         [(a, b, direction == MoveDirectionality.SWAP) for a, b, direction in batch_update.moved])

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """The batch's logits with every steered row combined with its delta's (in place)."""
        return self.host.apply(logits)
