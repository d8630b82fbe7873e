"""`run_eval(EvalConfig)`: load the model (and its deltas), run one suite on the plain and the steered model,
write `results.json`, `report.md` and the plots. What `crossmodel eval` calls.

Layout of `out`: run.json (config), <variant>/<part>.json per finished part (variants: "base" = the plain
model, "steered" = with the deltas; ifeval also writes <variant>/responses.jsonl), results.json, report.md,
*.png. Re-running with the same `out` and config skips every finished part.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from crossmodel.eval import ifeval, qa, resume, tofu
from crossmodel.eval.calibration import check_calibration_flags, load_calibration
from crossmodel.eval.data import TOFU_SPLITS, load_qa
from crossmodel.eval.report import RESULTS, render_report
from crossmodel.io import atomic_write_json
from crossmodel.models.load import model_dtype
from crossmodel.steer import EXTENSION_PENALTY, delta_entries
from crossmodel.train.data import load_examples

SUITES = ("tofu", "qa", "nll", "shift", "ifeval")
# tofu: locuslab's generation.max_length = 200; ifeval: lm-eval generates up to 1,280 tokens, which costs
# ~1 CPU-hour per 100 prompts even for a 135M model here; 256 fits most answers (docs/EVALUATION.md)
DEFAULT_NEW_TOKENS = {"tofu": 200, "qa": 128, "ifeval": 256}
PROMPT_FORMATS = ("auto", "own", "plain")


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation run; every field is a CLI flag of `crossmodel eval`."""

    model: str = field(metadata={"help": "user model: zoo name | HF dir | GGUF file | hub id"})
    suite: str = field(metadata={"help": "tofu | qa | nll | shift | ifeval"})
    data: tuple[str, ...] = field(metadata={"help": "tofu: a TOFU folder or split=FILE items; else one file"})
    out: str = field(metadata={"help": "output folder (re-use it to resume)"})
    deltas: tuple[str, ...] = ()
    alphas: tuple[float, ...] = field(default=(), metadata={"help": "one per delta, one for all, or none"})
    maps: tuple[str, ...] = field(default=(), metadata={"help": "token map dir per delta ('-' = same vocab)"})
    rule: str | None = None
    extension_penalty: float = EXTENSION_PENALTY  # steer(): taken off user tokens extending past their delta token
    format: str = field(default="tofu", metadata={"help": "qa/nll/shift file format: tofu | alpaca | chat"})
    limit: int | None = field(default=None, metadata={"help": "first N items of each split / file"})
    max_new_tokens: int | None = None
    chat: bool = True
    prompt_format: str = field(default="auto", metadata={"help": "auto (plain when every delta was trained in the "
                                                                 "plain format and needs no map, else own) | own | "
                                                                 "plain"})
    batch_size: int = 4
    forget: str = "forget10"
    splits: tuple[str, ...] = tuple(TOFU_SPLITS)
    reference: str | None = field(default=None, metadata={"help": "eval folder of a retain-only model (tofu)"})
    baseline: bool = field(default=True, metadata={"help": "also evaluate the model without deltas"})
    after: str | None = field(default=None, metadata={"help": "shift: fine-tuned copy of --model"})
    model_b: str | None = field(default=None, metadata={"help": "shift: the second model"})
    after_b: str | None = field(default=None, metadata={"help": "shift: fine-tuned copy of the second model"})
    shift_map: str | None = field(default=None, metadata={"help": "shift: token map from model to model_b"})
    top_k: int = 20
    score_eos: bool = field(default=False, metadata={
        "help": "tofu: score each answer with the end-of-answer token, as locuslab/open-unlearning do"})
    nltk_data: str | None = field(default=None, metadata={"help": "ifeval: folder with NLTK's punkt_tab data"})
    dtype: str = field(default="float32", metadata={"help": "the user model's dtype: float32 | bfloat16 (deltas "
                                                            "stay float32)"})
    calibration: str | None = field(default=None, metadata={
        "help": "a `crossmodel calibrate` folder: its α for the one delta (checked against model, delta, map)"})

    def __post_init__(self):
        if self.suite not in SUITES:
            raise ValueError(f"suite={self.suite!r}; choose one of {', '.join(SUITES)}")
        model_dtype(self.dtype)  # a bad --dtype fails before anything loads
        if self.prompt_format not in PROMPT_FORMATS:
            raise ValueError(f"prompt_format={self.prompt_format!r}; choose one of {', '.join(PROMPT_FORMATS)}")
        if not self.data:
            raise ValueError("no --data given: pass a TOFU folder (tofu) or a QA/instruction file")
        delta_entries(self.deltas, self.alphas, self.maps)  # checks the counts and every alpha, before any load
        if self.calibration is not None:
            check_calibration_flags(self.deltas, self.alphas)
            if self.suite == "shift":
                raise ValueError("--calibration: the shift suite steers two models with one α, and a calibration is "
                                 "made for one model; give --alpha instead")
        if self.suite in ("qa", "nll", "ifeval") and len(self.data) != 1:
            raise ValueError(f"suite {self.suite} reads one file; got --data {list(self.data)}")
        if self.limit is not None and self.limit < 1 or self.batch_size < 1:
            raise ValueError(f"limit={self.limit} and batch_size={self.batch_size} must be >= 1")
        if self.suite == "shift" and not (self.model_b and (self.after and self.after_b or self.deltas)):
            raise ValueError("suite=shift needs --model-b and either --after and --after-b (fine-tuned copies) or "
                             "--delta (the steered models are the 'after' side)")

    def identity(self) -> dict[str, Any]:
        """The settings that decide a run's results (what `run.json` records and a resume must match): every
        field but where the NLTK data is read from."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "nltk_data"}

    def new_tokens(self) -> int:
        return self.max_new_tokens or DEFAULT_NEW_TOKENS.get(self.suite, 128)


def resolve_prompt_format(prompt_format: str, deltas: tuple[str, ...] | list[str],
                          maps: tuple[str, ...] | list[str] = ()) -> str:
    """"own" or "plain": `auto` is plain when every delta was trained in the plain format and is in the model's own
    vocabulary (no map: it reads the user's tokens, so the user reads its format, plain and steered variants alike),
    else the model's own chat template (a delta of another vocabulary reads its own format)."""
    if prompt_format != "auto":
        return prompt_format
    from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE
    from crossmodel.steer.delta import trained_chat_template

    same_vocabulary = all(m in ("", "-") for m in maps)
    plain = bool(deltas) and same_vocabulary and all(trained_chat_template(d) == PLAIN_CHAT_TEMPLATE for d in deltas)
    return "plain" if plain else "own"


def load_user(model: str, dtype: str = "float32", prompt_format: str = "own", deltas: tuple[str, ...] = (),
              maps: tuple[str, ...] = ()) -> Any:
    """The user model (a LoadedModel) as every variant reads it: `prompt_format="plain"` gives it the plain
    'Question: …\nAnswer:' format even when it has a chat template of its own ("auto": `resolve_prompt_format`)."""
    from crossmodel.models import load_model

    prompt_format = resolve_prompt_format(prompt_format, deltas, maps)
    loaded = load_model(model, dtype=dtype)
    if prompt_format == "plain":  # every variant reads it, as deltas trained in that format did
        from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE

        loaded.tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    return loaded


def load_variants(config: EvalConfig, alphas: tuple[float, ...] | None = None) -> dict[str, Any]:
    """The evaluated models by variant name: "base" (plain) and/or "steered" (with the deltas, at `alphas`:
    default `config.alphas`)."""
    from crossmodel.eval.scorer import PlainModel

    loaded = load_user(config.model, config.dtype, config.prompt_format, config.deltas, config.maps)
    variants: dict[str, Any] = {}
    if config.baseline or not config.deltas:
        variants["base"] = PlainModel(loaded.model, loaded.tokenizer, batch_size=config.batch_size)
    if config.deltas:
        from crossmodel.steer import steer
        from crossmodel.models.prompt import chat_template_of

        # the plain-model fallback template for base models, so base and steered read the same prompts
        entries = delta_entries(config.deltas, config.alphas if alphas is None else alphas, config.maps)
        variants["steered"] = steer(loaded, deltas=entries, rule=config.rule,
                                    extension_penalty=config.extension_penalty,
                                    chat_template=chat_template_of(loaded.tokenizer))
    return variants


def steering_alphas(config: EvalConfig) -> tuple[tuple[float, ...], str | None]:
    """The α per delta a run steers with (() = each delta's saved default) and where it comes from: "calibration
    CAL" (checked against the model, delta and map by `load_calibration`), "--alpha" or "delta default"; None
    without deltas."""
    if not config.deltas:
        return (), None
    if config.calibration:
        token_map = config.maps[0] if config.maps else None
        calibration = load_calibration(config.calibration, config.model, config.deltas[0], token_map)
        return (calibration.alpha,), f"calibration {config.calibration}"
    return config.alphas, "--alpha" if config.alphas else "delta default"


def _tofu_files(config: EvalConfig) -> dict[str, Path]:
    if len(config.data) == 1 and "=" not in config.data[0]:
        return tofu.tofu_files(config.data[0], config.splits, config.forget)
    pairs = [item.split("=", 1) for item in config.data]
    if any(len(p) != 2 for p in pairs):
        raise ValueError(f"--data {list(config.data)}: give one TOFU folder, or split=FILE items "
                         f"(splits: {', '.join(TOFU_SPLITS)})")
    return {name: Path(path) for name, path in pairs}


REFERENCE_KEYS = ("suite", "data", "forget", "limit", "chat", "score_eos")  # a --reference run must match these


def _reference_forget(config: EvalConfig) -> dict | None:
    """The forget split of the `--reference` run (a retain-only model), refused when that run measured other
    data: forget quality compares two distributions of truth ratios over the same questions, scored alike."""
    if config.reference is None:
        return None
    recorded = Path(config.reference) / resume.RUN_FILE
    if recorded.is_file():
        theirs, ours = resume.read_run(config.reference), json.loads(json.dumps(config.identity()))
        differ = [f"{k}: {theirs.get(k)!r} there, {ours.get(k)!r} here" for k in REFERENCE_KEYS
                  if theirs.get(k) != ours.get(k)]
        if differ:
            raise ValueError(f"--reference {config.reference} was evaluated differently ({'; '.join(differ)}); "
                             "evaluate the retain-only model with the same --data/--forget/--limit and settings")
    for variant in ("base", "steered"):
        found = resume.load_part(Path(config.reference) / variant, "tofu_forget")
        if found is not None:
            return found
    raise FileNotFoundError(f"{config.reference} holds no finished TOFU forget split (base/tofu_forget.json); run "
                            "`crossmodel eval --suite tofu` on the retain-only model with that --out first")


def _eos_text(model: Any) -> str:
    """The end-of-answer text the scored answers end with under --score-eos (the model's EOS token)."""
    eos = getattr(getattr(model, "tokenizer", None), "eos_token", None)
    if not eos:
        raise ValueError("--score-eos needs a model whose tokenizer has an EOS token")
    return eos


def _run_suite(config: EvalConfig, model: Any, out: Path, checker: ifeval.IFEvalChecker | None,
               reference: dict | None) -> dict[str, Any]:
    if config.suite == "tofu":
        return tofu.run_tofu(model, _tofu_files(config), out, chat=config.chat, max_new_tokens=config.new_tokens(),
                             limit=config.limit, batch_size=config.batch_size,
                             reference_forget=reference,
                             eos=_eos_text(model) if config.score_eos else None)
    if config.suite == "ifeval":
        return ifeval.run_ifeval(model, ifeval.load_ifeval(config.data[0], config.limit), out, checker,
                                 chat=config.chat, max_new_tokens=config.new_tokens(), batch_size=config.batch_size)
    items = load_qa(config.data[0], config.format, config.limit)
    return qa.run_qa(model, items, out, part=config.suite, chat=config.chat, generate=config.suite == "qa",
                     max_new_tokens=config.new_tokens(), batch_size=config.batch_size)["summary"]


def _announce(config: EvalConfig, log: Callable[[str], None]) -> None:
    """Say how many items each variant will go through, and how to try a few first."""
    if config.suite == "tofu":
        counts = {name: len(load_examples(path, "tofu")) for name, path in _tofu_files(config).items()}
    elif config.suite == "ifeval":
        counts = {"ifeval": len(ifeval.load_ifeval(config.data[0]))}
    else:
        counts = {config.suite: len(load_qa(config.data[0], config.format, None))}
    if config.limit:
        counts = {name: min(n, config.limit) for name, n in counts.items()}
    variants = 1 + bool(config.deltas and config.baseline)
    log(f"{config.suite}: {', '.join(f'{n} {name}' for name, n in counts.items())} items x {variants} variant(s)"
        + ("" if config.limit else "; try --limit 20 first for a quick look"))


def run_eval(config: EvalConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run `config`; return the results dict that is also written to `<out>/results.json`.

    Everything is checked and loaded before `<out>/run.json` is written, so a failed start leaves nothing behind.
    """
    alphas, alpha_source = steering_alphas(config)  # a calibration is checked before anything is written
    identity = config.identity()
    if config.calibration:  # a calibration folder re-made in between is another run
        identity["calibration_alpha"] = alphas[0]
    resume.check_run(config.out, identity)
    results: dict[str, Any] = {"config": dataclasses.asdict(config), "suite": config.suite, "variants": {}}
    if config.suite == "shift":
        from crossmodel.eval.shift_run import run_shift

        out = resume.start_run(config.out, identity)
        results.update(run_shift(config, out))
    else:
        _announce(config, log)
        checker = ifeval.load_checker(config.nltk_data) if config.suite == "ifeval" else None
        reference = _reference_forget(config) if config.suite == "tofu" else None
        variants = load_variants(config, alphas)
        out = resume.start_run(config.out, identity)
        if "steered" in variants:
            results.update(alphas=[slot.alpha for slot in variants["steered"].slots], alpha_source=alpha_source)
        for name, model in variants.items():
            results["variants"][name] = _run_suite(config, model, out / name, checker, reference)
    atomic_write_json(out / RESULTS, results)
    render_report(out)
    return results
