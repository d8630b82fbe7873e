"""`steer(user_model, deltas=[(delta, alpha, token_map), ...])`: a user LLM plus deltas as one generator.

Checks every delta against the user model once (same vocabulary, or a token map built for exactly this pair),
then offers `generate` (batched, left-padded), `stream`, `score` (teacher-forced log-probabilities through the
same combination and sync as generation) and `logits_processor` for `user_model.generate` (docs/STEERING.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import torch
from transformers import PreTrainedModel

from crossmodel.models.batch import check_context, pad_id, pad_rows
from crossmodel.models.prompt import PLAIN_CHAT_TEMPLATE, chat_prompt
from crossmodel.steer.combine import COMBINE_RULES
from crossmodel.steer.delta import DeltaModel, check_alpha, vocab_fingerprint
from crossmodel.steer.generate import EXTENSION_PENALTY, DeltaSlot, combine_deltas, steered_tokens, token_picker
from crossmodel.steer.factored import logits_rows
from crossmodel.steer.processor import CMCLogitsProcessor
from crossmodel.steer.score import score_batch
from crossmodel.steer.sync import complete_text, forward_step, position_ids
from crossmodel.vocab import TokenMap

SYNCS = ("incremental", "full")


@dataclass(frozen=True)
class SteerConfig:
    """How deltas are applied: combination rule, fill for unmapped user tokens, cross-vocabulary sync."""

    rule: str | None = None  # None: the deltas' own rule (crossmodel.json), "basenormalize" for plain models
    fill: float = 0.0  # logit given to user tokens the map leaves unmapped; 0 as in the reference
    sync: str = "incremental"  # "full": the reference's re-encode of the whole text without a cache
    # taken off user tokens whose text extends past the delta token they map to (0 = the reference's plain copy)
    extension_penalty: float = EXTENSION_PENALTY

    def __post_init__(self):
        if self.rule is not None and self.rule not in COMBINE_RULES:
            raise ValueError(f"rule={self.rule!r} is not a combination rule; choose one of {sorted(COMBINE_RULES)}")
        if not math.isfinite(self.fill):
            raise ValueError(f"fill={self.fill} must be finite (alpha * inf is undefined at alpha=0); use a large "
                             "negative value such as -1e4 to all but forbid unmapped tokens")
        if not (math.isfinite(self.extension_penalty) and self.extension_penalty >= 0):
            raise ValueError(f"extension_penalty={self.extension_penalty} must be a finite number >= 0 (0 = the "
                             "reference's plain copy of the delta token's logit)")
        if self.sync not in SYNCS:
            raise ValueError(f"sync={self.sync!r}; choose one of {list(SYNCS)}")


def _name(obj: Any, fallback: str) -> str:
    return str(getattr(obj, "path", None) or getattr(obj, "name", None) or fallback)


@dataclass(frozen=True)
class DeltaSpec:
    """One delta to attach to a user model: the delta (a DeltaModel or its directory), its strength (None: the
    delta's saved default) and its token map into the user's vocabulary (a TokenMap or its directory; None: the
    user's own vocabulary). `steer()` also takes plain (delta, alpha, token_map) tuples."""

    delta: DeltaModel | str | Path
    alpha: float | None = None
    token_map: TokenMap | str | Path | None = None


def _as_spec(entry: Any) -> DeltaSpec:
    if isinstance(entry, DeltaSpec):
        return entry
    if isinstance(entry, (tuple, list)):
        if not 1 <= len(entry) <= 3:
            raise ValueError(f"a delta entry is (delta, alpha, token_map_or_None); got {len(entry)} items")
        return DeltaSpec(*entry)
    return DeltaSpec(entry)


def _check_prompts(prompts: Sequence[Any]) -> None:
    for i, p in enumerate(prompts):
        if not p:  # "" or an empty message list: nothing to continue from (and no token at all without a BOS)
            raise ValueError(f"prompt {i} is empty; give some text to continue (--prompt TEXT)")


def _check_stops(stop: Iterable[str]) -> tuple[str, ...]:
    stop = tuple(stop)
    if any(not isinstance(s, str) or not s for s in stop):
        raise ValueError(f"stop strings must be non-empty text, got {list(stop)!r} (an empty --stop would end "
                         "every generation before its first token)")
    return stop


class Steered:
    """A user model with deltas attached; build it with `steer(...)`."""

    def __init__(self, model: Any, tokenizer: Any, slots: list[DeltaSlot], rule: str,
                 chat_template: str | None = None):
        self.model, self.tokenizer, self.slots, self.rule = model, tokenizer, slots, rule
        self.chat_template = chat_template  # overrides the user tokenizer's own (e.g. for base models)
        self.pad_id = pad_id(tokenizer)
        eos = getattr(model.generation_config, "eos_token_id", None) or tokenizer.eos_token_id
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos or [])

    # ---- prompts --------------------------------------------------------------------------------------------
    def prompt_texts(self, prompts: Sequence[str], chat: bool) -> list[str]:
        """The user model's prompt strings (through its chat template when `chat`)."""
        return [chat_prompt(self.tokenizer, p, self.chat_template) if chat else p for p in prompts]

    def delta_prompt_texts(self, prompts: Sequence[str], chat: bool) -> list[list[str]]:
        """Per delta, the prompt strings it reads (its training chat template when `chat`)."""
        # a delta without a training template of its own reads the user's format
        user_template = self.chat_template or getattr(self.tokenizer, "chat_template", None)
        return [[chat_prompt(s.tokenizer, p, s.chat_template or getattr(s.tokenizer, "chat_template", None)
                             or user_template) if chat else p for p in prompts] for s in self.slots]

    def encode(self, prompts: Sequence[str], chat: bool = False, max_new_tokens: int = 0):
        """Left-padded user inputs {input_ids, attention_mask} for `prompts`; checks both models' contexts."""
        if isinstance(prompts, str):
            raise ValueError("prompts must be a list of strings; wrap a single prompt as [prompt]")
        if not prompts:
            raise ValueError("no prompts given")
        rows = self.tokenizer(self.prompt_texts(prompts, chat), add_special_tokens=not chat).input_ids
        check_context(self.model, [len(r) for r in rows], max_new_tokens, "user model")
        for slot, texts in zip(self.slots, self.delta_prompt_texts(prompts, chat)):
            lengths = [len(r) for r in slot.tokenizer(texts, add_special_tokens=not chat).input_ids]
            check_context(slot.model, lengths, max_new_tokens, f"delta {slot.name}")
        ids, mask = pad_rows(rows, self.pad_id, side="left", device=self.model.device)
        return {"input_ids": ids, "attention_mask": mask}

    # ---- generation -----------------------------------------------------------------------------------------
    def _steps(self, prompts: Sequence[str], max_new_tokens: int, do_sample: bool, temperature: float,
               top_k: int | None, top_p: float | None, stop: Iterable[str], chat: bool, seed: int):
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
        _check_prompts(prompts)
        stop = _check_stops(stop)
        inputs = self.encode(prompts, chat, max_new_tokens)
        pick = token_picker(do_sample, temperature, top_k, top_p, seed, self.model.device)
        return steered_tokens(self.model, self.slots, inputs["input_ids"], inputs["attention_mask"],
                              self.delta_prompt_texts(prompts, chat), self.delta_text, rule=self.rule,
                              max_new_tokens=max_new_tokens, pick=pick, eos_ids=self.eos_ids, pad_id=self.pad_id,
                              stop=tuple(stop), visible=self.text, add_special_tokens=not chat)

    def text(self, rows: list[list[int]]) -> list[str]:
        """What a reader sees of generated ids: special tokens dropped."""
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)

    def delta_text(self, rows: list[list[int]]) -> list[str]:
        """The generated text the deltas re-encode: special tokens kept, so identical tokenizers round-trip."""
        return self.tokenizer.batch_decode(rows, skip_special_tokens=False)

    def generate_ids(self, prompts: Sequence[str], max_new_tokens: int = 128, *, do_sample: bool = False,
                     temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                     stop: Iterable[str] = (), chat: bool = False, seed: int = 0) -> torch.Tensor:
        """New token ids (B, steps), pad after a row finished, as `user_model.generate(...)[:, prompt:]`."""
        steps = self._steps(prompts, max_new_tokens, do_sample, temperature, top_k, top_p, stop, chat, seed)
        return torch.stack([token for token, _ in steps], dim=1)

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 128, *, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 stop: Iterable[str] = (), chat: bool = False, seed: int = 0) -> list[str]:
        """The generated text per prompt, cut before the first stop string (which is not included)."""
        stop = tuple(stop)
        generated: list[list[int]] = [[] for _ in prompts]
        for _, generated in self._steps(prompts, max_new_tokens, do_sample, temperature, top_k, top_p, stop, chat,
                                        seed):
            pass
        return [_cut(t, stop) for t in self.text(generated)]

    def stream(self, prompt: str | list[dict], max_new_tokens: int = 128, *, do_sample: bool = False,
               temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
               stop: Iterable[str] = (), chat: bool = False, seed: int = 0) -> Iterator[str]:
        """Yield the text of one prompt piece by piece as it is generated (joined = `generate([prompt])[0]`).

        With chat=True the prompt may be a whole conversation: a list of {"role", "content"} messages."""
        stop = tuple(stop)
        hold = max((len(s) for s in stop), default=1) - 1  # keep back what could be the start of a stop string
        shown, text = 0, ""
        for _, generated in self._steps([prompt], max_new_tokens, do_sample, temperature, top_k, top_p, stop, chat,
                                        seed):
            text = complete_text(_cut(self.text(generated)[0], stop))
            ready = max(shown, len(text) - hold)
            if ready > shown:
                yield text[shown:ready]
                shown = ready
        if len(text) > shown:
            yield text[shown:]

    # ---- scoring and HF integration -------------------------------------------------------------------------
    def score(self, prompts: Sequence[str], continuations: Sequence[str], chat: bool = False,
              batch_size: int = 4) -> list[torch.Tensor]:
        """Per-token log-probabilities (float32) of each continuation (user tokenization) given its prompt.

        Teacher-forced through the same combination and sync as generation: with `deltas=[]` these are the
        plain model's log-softmax values.
        """
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations; give one each")
        out: list[torch.Tensor] = []
        for i in range(0, len(prompts), batch_size):
            out.extend(score_batch(self, list(prompts[i:i + batch_size]), list(continuations[i:i + batch_size]),
                                   chat))
        return out

    @torch.no_grad()
    def logprobs(self, ids: torch.Tensor) -> torch.Tensor:
        """CombinedStats next-token log-probabilities (T, V_user), float32, at every position of one row of user ids
        (1, T), teacher-forced; every delta must read the user's own tokens (same vocabulary)."""
        if any(slot.sync != "same" for slot in self.slots):
            raise ValueError("full-vocabulary log-probabilities need deltas in the user model's own vocabulary; a "
                             "delta in another vocabulary reads another tokenization of the text (use score())")
        ids = ids.to(self.model.device)
        mask = torch.ones_like(ids)
        positions = position_ids(mask)
        user = forward_step(self.model, ids, mask, positions, last_only=False).logits[0].float()  # (T, V_user)
        deltas = [slot.to_user(forward_step(slot.model, ids, mask, positions, last_only=False).logits[0].float())
                  for slot in self.slots]
        return combine_deltas(user, deltas, [s.alpha for s in self.slots], self.rule).log_softmax(-1)

    def logits_processor(self, prompts: Sequence[str], chat: bool = False):
        """A `CMCLogitsProcessor` for these prompts; `user_model.generate(**proc.inputs, logits_processor=[proc])`."""
        return CMCLogitsProcessor(self, prompts, chat=chat)


def delta_entries(deltas: Sequence[str], alphas: Sequence[float] = (), maps: Sequence[str] = ()) -> list[DeltaSpec]:
    """DeltaSpecs from the parallel --delta / --alpha / --map flag lists, as `steer` takes them.

    `alphas`: none (each delta's default), one (for all) or one per delta, each checked by `check_alpha`;
    `maps`: none or one per delta, "-" meaning the same vocabulary.
    """
    if len(alphas) not in (0, 1, len(deltas)):
        raise ValueError(f"{len(alphas)} --alpha values for {len(deltas)} --delta flags: give none, one, or one "
                         "per delta (in the same order)")
    if len(maps) not in (0, len(deltas)):
        raise ValueError(f"{len(maps)} --map values for {len(deltas)} --delta flags: give one per delta, "
                         "'-' for a delta in the user's own vocabulary")
    alphas = [check_alpha(a, "--alpha") for a in alphas]
    alpha_list = alphas * len(deltas) if len(alphas) == 1 else alphas or [None] * len(deltas)
    map_list = [None if m in ("-", "") else m for m in maps] or [None] * len(deltas)
    return [DeltaSpec(d, a, m) for d, a, m in zip(deltas, alpha_list, map_list)]


def token_map_for(user: Any, delta: DeltaModel, mode: str = "normalized") -> Any:
    """None for a delta in the user model's own vocabulary, else a `TokenMap` (user -> delta) built on the fly
    for exactly these two models' logits widths; `user` is a LoadedModel."""
    if user.fingerprint == delta.config.vocab_fingerprint:
        return None  # same vocabulary: the delta's logits are added directly
    return TokenMap.build(user.tokenizer, delta.tokenizer, mode=mode, user_rows=logits_rows(user.model),
                          delta_rows=delta.rows)


def _cut(text: str, stop: tuple[str, ...]) -> str:
    hits = [text.index(s) for s in stop if s in text]
    return text[: min(hits)] if hits else text


def _check_pair(user_fp: str, user_tok: Any, delta: Any, token_map: Any, user_rows: int, user_name: str,
                delta_name: str) -> None:
    """Same vocabulary, or a map for exactly this pair and these logits widths; else say what to do."""
    if token_map is None:
        stored = getattr(getattr(delta, "config", None), "vocab_fingerprint", "")
        delta_fp = stored or vocab_fingerprint(delta.tokenizer)
        if delta_fp != user_fp:
            raise ValueError(
                f"delta {delta_name} uses another vocabulary than the user model {user_name} (fingerprints "
                f"{delta_fp[:12]} vs {user_fp[:12]}); build a token map with `crossmodel map --user {user_name} "
                f"--delta {delta_name} --mode normalized --out MAP_DIR` and pass it (--map MAP_DIR, or "
                "(delta, alpha, token_map))")
        return
    token_map.verify(user=user_tok, delta=delta.tokenizer)
    if token_map.user_rows != user_rows or token_map.delta_rows != logits_rows(delta.model):
        raise ValueError(f"token map is for logits widths user={token_map.user_rows}, delta={token_map.delta_rows} "
                         f"but the models have user={user_rows}, delta={logits_rows(delta.model)}; rebuild it with "
                         "`crossmodel map` giving these widths")


def steer(user_model: Any, tokenizer: Any = None, deltas: Sequence[Any] = (), *, rule: str | None = None,
          fill: float = 0.0, sync: str = "incremental", chat_template: str | None = None,
          extension_penalty: float = EXTENSION_PENALTY) -> Steered:
    """Attach deltas to a user model: `deltas` = [DeltaSpec(delta, alpha, token_map) or such a tuple, ...].

    `user_model` is a LoadedModel (or anything with .model/.tokenizer) or an HF model with `tokenizer` given.
    alpha None takes the delta's default; rule None takes the deltas' own (they must agree). `chat_template`
    replaces the user tokenizer's own for chat=True; None: the plain format when every delta was trained in it and
    reads the user's own tokens (same vocabulary: both then read the same text), else the tokenizer's own. `extension_penalty` is taken off user tokens
    whose text extends past the delta token they map to (0: the CMC reference's plain copy).
    """
    config = SteerConfig(rule=rule, fill=fill, sync=sync, extension_penalty=extension_penalty)
    # an HF model is used as it is (Llama-style models have a `.model` of their own: the trunk, not a wrapper)
    model = user_model if isinstance(user_model, PreTrainedModel) else getattr(user_model, "model", user_model)
    tokenizer = tokenizer or getattr(user_model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("steer() needs the user model's tokenizer: pass a LoadedModel or tokenizer=")
    user_name = str(getattr(user_model, "name", None) or getattr(model.config, "name_or_path", "") or "USER_MODEL")
    user_fp = getattr(user_model, "fingerprint", None) or vocab_fingerprint(tokenizer)
    user_rows = logits_rows(model)
    slots, rules = [], set()
    for spec in map(_as_spec, deltas):
        delta, alpha, token_map = spec.delta, spec.alpha, spec.token_map
        delta_name = str(delta) if isinstance(delta, (str, Path)) else _name(delta, "DELTA_DIR")
        delta = DeltaModel.load(delta) if isinstance(delta, (str, Path)) else delta
        token_map = TokenMap.load(token_map) if isinstance(token_map, (str, Path)) else token_map
        _check_pair(user_fp, tokenizer, delta, token_map, user_rows, user_name, delta_name)
        if token_map is not None:
            token_map = token_map.with_extensions(tokenizer, delta.tokenizer)  # maps saved before `extends` existed
        delta_config = getattr(delta, "config", None)
        rules.add(getattr(delta_config, "rule", "basenormalize"))
        slots.append(DeltaSlot(model=delta.model.to(model.device), tokenizer=delta.tokenizer,
                               alpha=check_alpha(getattr(delta_config, "alpha", 1.0) if alpha is None else alpha,
                                                 f"alpha of delta {delta_name}"),
                               token_map=token_map, user_rows=user_rows, fill=config.fill,
                               extension_penalty=config.extension_penalty,
                               sync="same" if token_map is None else config.sync,
                               chat_template=getattr(delta_config, "chat_template", None), name=delta_name))
    if chat_template is None and slots and all(s.chat_template == PLAIN_CHAT_TEMPLATE and s.token_map is None
                                               for s in slots):
        # a delta in the user's vocabulary reads the user's own tokens, so the user reads the delta's plain format
        # (a delta of another vocabulary reads its own format anyway)
        chat_template = PLAIN_CHAT_TEMPLATE
    if config.rule is None and len(rules) > 1:
        raise ValueError(f"the deltas were trained with different rules {sorted(rules)}; pass rule= explicitly")
    return Steered(model, tokenizer, slots, config.rule or (rules.pop() if rules else "basenormalize"), chat_template)
