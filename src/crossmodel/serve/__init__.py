"""crossmodel.serve: deltas on vLLM — a logits processor for continuous batching and `crossmodel serve`.

Serving sits beside steer: it reuses steer's combination rules, delta artefact and incremental re-encode sync,
and nothing in steer imports it. Only `crossmodel.serve.processor` imports vLLM (load it by name: PROCESSOR).
"""

from crossmodel.serve.config import (ENV_VAR, DeltaRequest, ServeConfig, ServedDelta, delta_request, named_paths,
                                     serve_config)
from crossmodel.serve.host import DeltaHost, Running
from crossmodel.serve.launch import (PROCESSOR, ServerOptions, check_deltas, check_vllm, model_path,
                                     server_command, server_env, steered_llm, vllm_problem)
from crossmodel.serve.rows import DeltaRows

__all__ = ["ENV_VAR", "PROCESSOR", "DeltaHost", "DeltaRequest", "DeltaRows", "Running", "ServeConfig",
           "ServedDelta", "ServerOptions", "check_deltas", "check_vllm", "delta_request", "model_path",
           "named_paths", "serve_config", "server_command", "server_env", "steered_llm", "vllm_problem"]
