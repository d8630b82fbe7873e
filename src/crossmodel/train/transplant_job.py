"""The `crossmodel transplant` job, beside `run_training`: move a delta into another vocabulary
(`crossmodel.steer.transplant`), optionally align it toward the original's runtime-mapped logits
(`crossmodel.train.distill`), record the agreement before and after, and save it.

The agreement metric (`logit_agreement`) lives with the alignment in `distill.py`: the job needs it, and the train
stage may not import eval; eval reads it from there.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from crossmodel.steer import DeltaModel
from crossmodel.steer.transplant import provenance, save_transplant, transplant, with_provenance
from crossmodel.train.distill import DistillConfig, distill, load_texts, logit_agreement
from crossmodel.vocab import TokenMap


def distill_transplant(student: Any, teacher: Any, token_map: Any, texts: list[str], cfg: DistillConfig,
                       eval_texts: list[str] | None = None, on_step: Callable[[int, float], None] | None = None
                       ) -> dict[str, Any]:
    """`distill`, with agreement measured before and after on `eval_texts` (default: `texts`), recorded in the
    student's crossmodel.json (provenance "distill" and metrics); returns that record."""
    eval_texts = eval_texts or texts
    before = logit_agreement(student, teacher, token_map, eval_texts, max_length=cfg.max_length)
    result = distill(student, teacher, token_map, texts, cfg, on_step)
    after = logit_agreement(student, teacher, token_map, eval_texts, max_length=cfg.max_length)
    record = {"config": dataclasses.asdict(cfg), "texts": len(texts), "eval_texts": len(eval_texts),
              "first_loss": result.losses[0] if result.losses else None,
              "last_loss": result.losses[-1] if result.losses else None, "positions": result.positions,
              "agreement_before": before, "agreement_after": after}
    config = with_provenance(student.config, {**provenance(student.config), "distill": record})
    student.config = dataclasses.replace(config, metrics={**config.metrics, "distill_agreement": after})
    return record


def run_transplant(delta: str | Path, to: Any, out: str | Path, *, mode: str = "one-to-many",
                   token_map: str | Path | None = None, layout: str = "factored",
                   distill_data: str | Path | None = None, distill_format: str = "tofu",
                   cfg: DistillConfig | None = None) -> tuple[Path, dict[str, Any]]:
    """`crossmodel transplant`: transplant `delta` into the vocabulary of `to` (`layout` factored or dense),
    optionally distil it on `distill_data` toward the original's mapped logits, save it to `out`; returns
    (out, summary)."""
    if cfg is not None and distill_data is None:
        raise ValueError("distillation needs text: pass --distill-data FILE (e.g. the generated facts)")
    texts = load_texts(distill_data, distill_format) if distill_data is not None else None
    source = DeltaModel.load(delta)
    tmap = TokenMap.load(token_map) if token_map is not None else None
    moved, tmap = transplant(source, to, mode=mode, token_map=tmap, layout=layout)
    if texts is not None:
        distill_transplant(moved, source, tmap, texts, cfg or DistillConfig())
    return save_transplant(moved, tmap, out), provenance(moved.config)
