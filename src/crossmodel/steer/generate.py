"""The steered decoding loop (docs/STEERING.md): a user model and its deltas step together, one token at a time.

Reads like nanoGPT's `GPT.generate`: step the user model (KV cache), take the last logits, bring each delta's
last logits into the user's vocabulary, combine (combine.py), pick the next token (argmax, or transformers'
logits warpers + multinomial), append, then let every delta feed catch up (sync.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from transformers import DynamicCache
from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper,
                                                    TopPLogitsWarper)

from crossmodel.steer.combine import combine, get_rule, normalize
from crossmodel.steer.sync import FullReencodeFeed, ReencodeFeed, TokenFeed, forward_step, position_ids
from crossmodel.vocab import TokenMap

Picker = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Logit taken off a user token whose text extends past the delta token it maps to ("ovana" -> "ovan"): the delta
# predicted "ovan", not the longer token; 0 gives every such row the delta token's full logit, as the CMC reference
# does. 2 is the value measured on a dev set of facts (docs/RESULTS.md, "Fluent answers across vocabularies").
EXTENSION_PENALTY = 2.0
FEEDS = {"same": TokenFeed, "incremental": ReencodeFeed, "full": FullReencodeFeed}


@dataclass
class DeltaSlot:
    """One delta as the loop sees it: its model and tokenizer, strength, map into the user vocabulary, feed kind."""

    model: Any
    tokenizer: Any
    alpha: float
    token_map: TokenMap | None  # None: the delta is in the user's own vocabulary
    user_rows: int  # width of the user model's logits
    fill: float = 0.0  # value for user tokens the map leaves unmapped; 0 as in the reference
    extension_penalty: float = EXTENSION_PENALTY  # taken off rows whose user token extends past its delta token
    sync: str = "same"  # a key of FEEDS
    chat_template: str | None = None  # the delta's training chat template (chat prompts)
    name: str = "delta"

    def new_feed(self, add_special_tokens: bool = True):
        """A fresh feed (own KV cache) for one batch."""
        if self.sync == "same":
            return TokenFeed(self.model)
        return FEEDS[self.sync](self.model, self.tokenizer, add_special_tokens=add_special_tokens)

    def to_user(self, logits: torch.Tensor) -> torch.Tensor:
        """Delta logits (..., V_delta) in the user's vocabulary (..., V_user)."""
        if self.token_map is not None:
            # unmapped rows get `fill`; rows whose user token extends past its delta token lose the penalty
            return self.token_map.gather(logits, fill=self.fill, extension_penalty=self.extension_penalty)
        width = logits.shape[-1]
        if width >= self.user_rows:  # same tokenizer, the delta's matrix may be padded wider
            return logits[..., : self.user_rows]
        extra = logits.new_full((*logits.shape[:-1], self.user_rows - width), self.fill)
        return torch.cat([logits, extra], dim=-1)


def combine_deltas(user_logits: torch.Tensor, delta_logits: list[torch.Tensor], alphas: list[float],
                rule: str) -> torch.Tensor:
    """The user's logits combined with every delta's (already in the user vocabulary) under one rule.

    The first delta goes through `combine`; each further delta only adds its own term (alpha * z_delta, or
    alpha * log_softmax(z_delta) for `normalize`), so k deltas give log_softmax(z_user) + sum_i alpha_i * term_i.
    With no delta the user's own logits come back unchanged.
    """
    if not delta_logits:
        return user_logits.float()
    z = combine(user_logits, delta_logits[0], rule, alphas[0])
    for logits, alpha in zip(delta_logits[1:], alphas[1:]):
        term = torch.log_softmax(logits.float(), dim=-1) if get_rule(rule) is normalize else logits
        z = combine(z, term, "add", alpha)
    return z


def sampling(sample: bool, temperature: float | None) -> tuple[bool, float]:
    """(do_sample, temperature) from a "--sample" switch and an optional temperature: greedy unless `sample` or a
    temperature > 0 asks for sampling; `sample` alone samples at 1. Checked by `token_picker`."""
    if temperature is None:
        return sample, 1.0
    return sample or temperature > 0, temperature


def token_picker(do_sample: bool, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 seed: int = 0, device: Any = "cpu") -> Picker:
    """pick(ids (B, T), z (B, V)) -> next tokens (B,): argmax, or sampling through transformers' warpers.

    The settings are checked even for greedy decoding, so a mistyped value is never silently ignored.
    """
    if not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature={temperature} must be a finite number >= 0 (0 = greedy)")
    if do_sample and temperature == 0:
        raise ValueError("temperature=0 cannot be sampled from: give a temperature > 0 (e.g. 0.7) to sample, "
                         "or decode greedily (no --sample / do_sample=False)")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k={top_k} must be >= 1 (or None for no limit)")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p} must be in (0, 1] (or None for no limit)")
    if not do_sample:
        return lambda ids, z: z.argmax(dim=-1)
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p is not None and top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    generator = torch.Generator(device=device).manual_seed(seed)

    def pick(ids: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(warpers(ids, z), dim=-1)  # (B, V)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    return pick


@torch.no_grad()
def steered_tokens(user_model: Any, slots: list[DeltaSlot], input_ids: torch.Tensor, attention_mask: torch.Tensor,
                   delta_prompts: list[list[str]], decode: Callable[[list[list[int]]], list[str]], *,
                   rule: str, max_new_tokens: int, pick: Picker, eos_ids: list[int], pad_id: int,
                   stop: tuple[str, ...] = (), visible: Callable[[list[list[int]]], list[str]] | None = None,
                   add_special_tokens: bool = True) -> Iterator[tuple[torch.Tensor, list[list[int]]]]:
    """Yield (next tokens (B,), generated ids per row) once per step until every row is done.

    Rows that finished (EOS or a stop string in `visible` text) get `pad_id`, as in `transformers` generate.
    `decode` gives the text the re-encoding feeds read; `delta_prompts[i]` are the prompt texts in delta i's
    own format.
    """
    device = input_ids.device
    feeds = [slot.new_feed(add_special_tokens) for slot in slots]
    cache, mask = DynamicCache(config=user_model.config), attention_mask
    out = forward_step(user_model, input_ids, mask, position_ids(mask), cache)  # as generate's prefill does
    delta_logits = [feed.start(input_ids, mask, prompts) for feed, prompts in zip(feeds, delta_prompts)]
    alphas = [slot.alpha for slot in slots]
    reencoding = any(slot.sync != "same" for slot in slots)
    eos = torch.tensor(eos_ids, device=device, dtype=torch.long)
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=device)
    generated: list[list[int]] = [[] for _ in range(input_ids.shape[0])]
    ids = input_ids
    for _ in range(max_new_tokens):
        user_logits = out.logits[:, -1].float()  # (B, V_user)
        z = combine_deltas(user_logits, [s.to_user(d.to(device)) for s, d in zip(slots, delta_logits)], alphas, rule)
        token = pick(ids, z).masked_fill(done, pad_id)  # (B,)
        ids = torch.cat([ids, token[:, None]], dim=-1)
        for b in (~done).nonzero().flatten().tolist():
            generated[b].append(int(token[b]))
        texts = decode(generated) if reencoding else []  # only re-encoding feeds read the text
        done |= torch.isin(token, eos)
        if stop:
            done |= torch.tensor([any(s in t for s in stop) for t in visible(generated)], device=device)
        yield token, generated
        if bool(done.all()):
            return
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        out = forward_step(user_model, token[:, None], mask, mask.sum(-1, keepdim=True) - 1, cache)
        delta_logits = [feed.step(token, texts) for feed in feeds]
