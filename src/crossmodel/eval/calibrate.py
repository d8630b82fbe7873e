"""`crossmodel calibrate`: a steering strength α chosen per user model, on the user's own dev data.

Every α of a grid (0 always in it) steers the user model with the delta; on the dev items it measures the mean
per-token NLL of the reference answers, teacher-forced through the steered model (`Steered.score`, through the
same `qa.score_items` as `crossmodel eval --suite nll`), its paired gap to α = 0 with a standard error (items as
the unit: `paired.paired_nll_gap`), and the share of degenerate greedy answers on the first K items
(`metrics.degenerate`, the rule `eval` counts with). With a retain file (unlearning: the data is the forget set)
it measures the forget NLL and the retain NLL. `choose_alpha` then picks α (the rule is in its docstring and in
docs/STEERING.md), and `run_calibration` writes CAL/calibration.json atomically (`calibration.py` reads it).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from crossmodel import __version__
from crossmodel.eval.calibration import CALIBRATION_FILE, SCHEMA_VERSION, fingerprints
from crossmodel.eval.data import QAItem, load_qa
from crossmodel.eval.metrics import degenerate
from crossmodel.eval.paired import paired_nll_gap
from crossmodel.eval.qa import score_items
from crossmodel.eval.runner import PROMPT_FORMATS, load_user, resolve_prompt_format
from crossmodel.io import atomic_write_json
from crossmodel.models.load import model_dtype
from crossmodel.steer.delta import check_alpha

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
FORMATS = ("tofu", "alpaca", "chat")


def parse_alphas(text: str) -> tuple[float, ...]:
    """A comma-separated α grid ("0,0.5,1") as numbers, each checked by `check_alpha`."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--alphas {text!r}: give comma-separated numbers, e.g. --alphas 0,0.5,1") from None
    if not values:
        raise ValueError(f"--alphas {text!r} holds no number; give e.g. --alphas 0,0.5,1")
    return tuple(check_alpha(a, "--alphas") for a in values)


@dataclass(frozen=True)
class CalibrateConfig:
    """One calibration; every field is a flag of `crossmodel calibrate`."""

    model: str
    delta: str
    data: str  # the dev data; with `retain`, the forget set
    out: str
    token_map: str | None = None  # None (or "-"): the delta is in the model's own vocabulary
    retain: str | None = None
    format: str = "tofu"
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    limit: int | None = None
    gen_items: int = 8
    max_new_tokens: int = 64
    batch_size: int = 4
    chat: bool = True
    prompt_format: str = "auto"
    dtype: str = "float32"

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"--format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"--prompt-format {self.prompt_format!r}; choose one of {', '.join(PROMPT_FORMATS)}")
        model_dtype(self.dtype)
        for alpha in self.alphas:
            check_alpha(alpha, "--alphas")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit {self.limit} must be >= 1")
        if self.gen_items < 0 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"--gen-items {self.gen_items} must be >= 0, --max-new-tokens {self.max_new_tokens} and "
                             f"--batch-size {self.batch_size} >= 1")
        for flag, path in (("--data", self.data), ("--retain", self.retain)):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{flag} {path} not found")
        if Path(self.out).is_file():
            raise ValueError(f"--out {self.out} is a file; give a folder (calibration.json is written into it)")

    def maps(self) -> tuple[str, ...]:
        """The --map as `eval`'s map list: empty for a delta in the model's own vocabulary."""
        return () if self.token_map in (None, "", "-") else (self.token_map,)

    def grid(self) -> tuple[float, ...]:
        """The α tried, sorted, α = 0 always among them."""
        return tuple(sorted({float(a) for a in self.alphas} | {0.0}))

    def settings(self) -> dict[str, Any]:
        """The settings a calibration was made under, as calibration.json records them."""
        return {"format": self.format, "chat": self.chat, "prompt_format": self.prompt_format, "limit": self.limit,
                "gen_items": self.gen_items, "max_new_tokens": self.max_new_tokens, "dtype": self.dtype,
                "alphas": list(self.grid())}


@dataclass(frozen=True)
class Scored:
    """One file at one α: token-weighted mean NLL of the answers, its paired gap to α = 0 and the gap's standard
    error (NaN from one item), over `items` items of `tokens` answer tokens."""

    nll: float
    gap: float
    se: float
    items: int
    tokens: int

    @classmethod
    def paired(cls, records: list[dict], base: list[dict]) -> Scored:
        """From `qa.score_items` records at this α and at α = 0, item by item."""
        tokens = [r["tokens"] for r in records]
        gap, se = paired_nll_gap([r["nll_sum"] - b["nll_sum"] for r, b in zip(records, base)], tokens)
        return cls(sum(r["nll_sum"] for r in records) / sum(tokens), gap, se, len(records), sum(tokens))


@dataclass(frozen=True)
class GridPoint:
    """Everything measured at one α: the data (forget) file, the retain file when there is one, and the share of
    degenerate greedy answers among the first `generated` items (None when none were generated)."""

    alpha: float
    data: Scored
    retain: Scored | None = None
    degenerate: float | None = None
    generated: int = 0


def gains(point: GridPoint) -> bool:
    """Whether α gains over α = 0 by more than one standard error: SFT data: the answer NLL falls, gap + s.e. < 0;
    unlearning (a retain file): the forget NLL rises, gap − s.e. > 0, and the retain NLL does not rise by more
    than its s.e., gap ≤ s.e. A NaN s.e. (one item) never gains."""
    if point.retain is None:
        return point.data.gap + point.data.se < 0
    return point.data.gap - point.data.se > 0 and point.retain.gap <= point.retain.se


def _no_more_degenerate(point: GridPoint, base: GridPoint) -> bool:
    return point.degenerate is None or base.degenerate is None or point.degenerate <= base.degenerate


def helps(point: GridPoint, base: GridPoint) -> bool:
    """An α ≠ 0 that `gains` without a larger share of degenerate answers than α = 0 (`base`)."""
    return point.alpha != 0 and gains(point) and _no_more_degenerate(point, base)


def _gap(scored: Scored) -> str:
    return f"gap {scored.gap:+.4f} ± {scored.se:.4f}"


def choose_alpha(grid: Sequence[GridPoint]) -> tuple[float, str]:
    """The chosen α and a one-line reason. Among the α that `help` (gain over α = 0 by more than one standard
    error, with no larger share of degenerate answers than α = 0) the one with the best objective: the lowest
    answer NLL (SFT), or the highest forget NLL (unlearning); ties go to the smaller |α|. None helps: α = 0."""
    base = next((p for p in grid if p.alpha == 0), None)
    if base is None:
        raise ValueError("the α grid must hold α = 0, the model alone, to compare with")
    unlearning = base.retain is not None
    what = "forget NLL" if unlearning else "answer NLL"
    candidates = [p for p in grid if helps(p, base)]
    if not candidates:
        others = [p for p in grid if p.alpha != 0]
        if not others:
            return 0.0, "only α = 0 was tried"
        closest = max(others, key=lambda p: p.data.gap if unlearning else -p.data.gap)
        return 0.0, (f"no α ≠ 0 {'raises' if unlearning else 'lowers'} the {what} by more than one standard error"
                     f"{' without raising the retain NLL' if unlearning else ''} and without more degenerate answers "
                     f"than α = 0 (closest: α = {closest.alpha:g}, {_gap(closest.data)})")
    best = min(candidates, key=lambda p: ((-1 if unlearning else 1) * p.data.nll, abs(p.alpha)))
    reason = (f"α = {best.alpha:g} has the {'highest' if unlearning else 'lowest'} {what} of the α that gain more "
              f"than one standard error over α = 0 without more degenerate answers: {best.data.nll:.4f} vs "
              f"{base.data.nll:.4f} ({_gap(best.data)})")
    if unlearning:
        reason += f"; retain {_gap(best.retain)}"
    return best.alpha, reason


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN: an s.e. from one item is null


def grid_record(point: GridPoint, base: GridPoint) -> dict[str, Any]:
    """One row of calibration.json's grid: α, nll, gap, se, items, tokens, degenerate share, generated, helps and,
    with a retain file, the same figures for it under "retain"."""
    row: dict[str, Any] = {"alpha": point.alpha, **{k: _finite(v) if isinstance(v, float) else v
                                                     for k, v in asdict(point.data).items()},
                           "degenerate": point.degenerate, "generated": point.generated,
                           "helps": helps(point, base)}
    if point.retain is not None:
        row["retain"] = {k: _finite(v) if isinstance(v, float) else v for k, v in asdict(point.retain).items()}
    return row


def _sha256(path: str | None) -> dict[str, Any] | None:
    from crossmodel.models.fetch import sha256_file

    return None if path is None else {"path": str(path), "sha256": sha256_file(Path(path))}


def _scored_records(model: Any, items: list[QAItem], config: CalibrateConfig) -> list[dict]:
    size = config.batch_size
    return [r for i in range(0, len(items), size) for r in score_items(model, items[i:i + size], config.chat, None)]


def _degenerate_share(model: Any, items: list[QAItem], config: CalibrateConfig) -> tuple[float | None, int]:
    prompts = [it.prompt for it in items[:config.gen_items]]
    if not prompts:
        return None, 0
    size = config.batch_size
    answers = [a.strip() for i in range(0, len(prompts), size)
               for a in model.generate(prompts[i:i + size], max_new_tokens=config.max_new_tokens, chat=config.chat)]
    return sum(map(degenerate, answers)) / len(answers), len(answers)


def _log_point(point: GridPoint, seconds: float) -> str:
    line = f"α = {point.alpha:g}: NLL {point.data.nll:.4f} ({_gap(point.data)})"
    if point.retain is not None:
        line += f", retain NLL {point.retain.nll:.4f} ({_gap(point.retain)})"
    if point.degenerate is not None:
        line += f", degenerate {round(point.degenerate * point.generated)}/{point.generated}"
    return f"{line} [{seconds:.0f} s]"


def measure_grid(config: CalibrateConfig, log: Callable[[str], None] = print) -> tuple[list[GridPoint], str]:
    """Load the model, delta and map, and measure every α of the grid; return the points and the delta's rule."""
    from crossmodel.models.prompt import chat_template_of
    from crossmodel.steer import DeltaModel, steer
    from crossmodel.vocab import TokenMap

    items = load_qa(config.data, config.format, config.limit)
    retain = load_qa(config.retain, config.format, config.limit) if config.retain else None
    loaded = load_user(config.model, config.dtype, config.prompt_format, (config.delta,), config.maps())
    delta = DeltaModel.load(config.delta)
    token_map = TokenMap.load(config.maps()[0]) if config.maps() else None
    template = chat_template_of(loaded.tokenizer)  # base models read the plain format, as in `eval`
    log(f"calibrate: {len(items)} items{f' + {len(retain)} retain items' if retain else ''} x "
        f"{len(config.grid())} α; greedy answers of the first {min(config.gen_items, len(items))} at each α")
    # every α attached before anything runs (a wrong map fails here); α = 0 is the model alone: the same numbers as
    # the delta at α = 0, without running the delta
    variants = {alpha: steer(loaded, deltas=[(delta, alpha, token_map)] if alpha else [], chat_template=template)
                for alpha in config.grid()}
    points, base = [], None
    for alpha in sorted(variants, key=lambda a: a != 0):  # α = 0 first: every other α is paired with it
        start = time.time()
        records = _scored_records(variants[alpha], items, config)
        retained = _scored_records(variants[alpha], retain, config) if retain else None
        base = base or (records, retained)
        share, generated = _degenerate_share(variants[alpha], items, config)
        point = GridPoint(alpha, Scored.paired(records, base[0]),
                          Scored.paired(retained, base[1]) if retain else None, share, generated)
        points.append(point)
        log(_log_point(point, time.time() - start))
    return sorted(points, key=lambda p: p.alpha), delta.config.rule


@dataclass(frozen=True)
class CalibrationResult:
    """What `run_calibration` found: the chosen α, the reason, the measured grid and where it was written."""

    alpha: float
    reason: str
    grid: list[GridPoint]
    path: Path


def run_calibration(config: CalibrateConfig, log: Callable[[str], None] = print) -> CalibrationResult:
    """Measure the grid, choose α and write `config.out`/calibration.json atomically (nothing else in that folder
    is touched). Model, delta, map and data are fingerprinted before the model loads, so a missing file fails fast.
    """
    # the format actually read is what the calibration records ("auto" resolved against the delta)
    config = replace(config, prompt_format=resolve_prompt_format(config.prompt_format, (config.delta,),
                                                                 config.maps()))
    if 0.0 not in config.alphas:
        log("calibrate: α = 0 added to the grid (the model alone, which every α is compared with)")
    found = fingerprints(config.model, config.delta, config.token_map)
    data, retain = _sha256(config.data), _sha256(config.retain)
    grid, rule = measure_grid(config, log)
    alpha, reason = choose_alpha(grid)
    base = next(p for p in grid if p.alpha == 0)
    data["items"] = base.data.items
    if retain is not None:
        retain["items"] = base.retain.items
    record = {"schema_version": SCHEMA_VERSION, "crossmodel_version": __version__, "alpha": alpha, "reason": reason,
              "objective": "unlearning" if config.retain else "answer_nll", **found, "data": data, "retain": retain,
              "settings": {**config.settings(), "rule": rule}, "grid": [grid_record(p, base) for p in grid]}
    path = Path(config.out) / CALIBRATION_FILE
    atomic_write_json(path, record)
    return CalibrationResult(alpha, reason, grid, path)


def grid_table(grid: Sequence[GridPoint], chosen: float) -> str:
    """The grid as a markdown table (α, NLL, gap ± s.e., retain columns when measured, degenerate answers), the
    chosen row marked."""
    base = next(p for p in grid if p.alpha == 0)
    unlearning = base.retain is not None
    head = ["α", "forget NLL" if unlearning else "NLL", "gap ± s.e."]
    head += ["retain NLL", "retain gap ± s.e."] if unlearning else []
    head += ["degenerate", "helps"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in grid:
        cells = [f"{p.alpha:g}" + (" (chosen)" if p.alpha == chosen else ""), f"{p.data.nll:.4f}",
                 f"{p.data.gap:+.4f} ± {p.data.se:.4f}"]
        if unlearning:
            cells += [f"{p.retain.nll:.4f}", f"{p.retain.gap:+.4f} ± {p.retain.se:.4f}"]
        cells += ["–" if p.degenerate is None else f"{round(p.degenerate * p.generated)}/{p.generated}",
                  "–" if p.alpha == 0 else "yes" if helps(p, base) else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
