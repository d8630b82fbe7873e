"""The `shift` suite of `crossmodel eval`: build the two (before, after) pairs from an EvalConfig and compare
their logit shifts on the texts of a QA/instruction file (prompt and reference response joined by a newline).

"After" is either a fine-tuned copy (`--after`, `--after-b`) or the model steered by the given deltas (which
must read the model's own tokens: same tokenizer, or a map to gather rows of the same tokenization).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from crossmodel.eval import resume
from crossmodel.eval.data import load_qa
from crossmodel.eval.logit_shift import ShiftPair, compare_shifts, model_logprobs, steered_logprobs

PART = "shift"
DEFAULT_TEXTS = 8


def _steered_after(loaded, config) -> Any:
    from crossmodel.steer import delta_entries, steer

    if len(config.deltas) != 1 or any(m not in ("-", "") for m in config.maps):
        raise ValueError("the shift suite takes exactly one --delta in the model's own vocabulary (or "
                         "--after/--after-b fine-tuned copies)")
    # steer() checks the delta's vocabulary fingerprint against the model's
    return steered_logprobs(steer(loaded, deltas=delta_entries(config.deltas, config.alphas), rule=config.rule))


def _pair(spec: str, after_spec: str | None, config) -> ShiftPair:
    from crossmodel.models import load_model

    loaded = load_model(spec)
    after = model_logprobs(load_model(after_spec).model) if after_spec else _steered_after(loaded, config)
    name = f"{spec} → {after_spec or 'steered'}"
    return ShiftPair(name, loaded.tokenizer, model_logprobs(loaded.model), after)


def run_shift(config, out: Path) -> dict[str, Any]:
    """{"variants": {"shift": summary}, "example": heatmap data}; the full result is saved as shift.json."""
    done = resume.load_part(out, PART)
    if done is None:
        from crossmodel.vocab import TokenMap

        items = load_qa(config.data[0], config.format, config.limit or DEFAULT_TEXTS)
        texts = [f"{it.prompt}\n{it.reference}" for it in items]
        token_map = TokenMap.load(config.shift_map) if config.shift_map else None
        done = compare_shifts(_pair(config.model, config.after, config), _pair(config.model_b, config.after_b, config),
                              texts, token_map=token_map, k=config.top_k)
        resume.save_part(out, PART, done)
    return {"variants": {"shift": done["summary"]}, "example": done["example"]}
