"""Run requests through vLLM with the crossmodel delta processor and write their greedy token ids as JSON.

    python tests/serve/vllm_run.py SPEC.json OUT.json

SPEC: {"model", "deltas": {NAME: DIR}, "maps": {NAME: DIR}, "requests": [{"prompt_token_ids", "max_tokens",
"extra_args"}]}. A script rather than a test body because vLLM's `LLM` starts its engine in a new process and
must be built under `if __name__ == "__main__":`.
"""

from __future__ import annotations

import json
import sys

from crossmodel.serve import steered_llm


def main(spec_path: str, out_path: str) -> None:
    from vllm import SamplingParams

    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    llm = steered_llm(spec["model"], spec["deltas"], spec.get("maps"), dtype="float32", enforce_eager=True,
                      max_model_len=1024, seed=0)
    requests = spec["requests"]
    params = [SamplingParams(temperature=0.0, max_tokens=r["max_tokens"], extra_args=r.get("extra_args"))
              for r in requests]
    outputs = llm.generate([{"prompt_token_ids": r["prompt_token_ids"]} for r in requests], params, use_tqdm=False)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump([{"token_ids": list(o.outputs[0].token_ids), "text": o.outputs[0].text} for o in outputs], f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
