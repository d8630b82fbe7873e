"""Teacher-forced scoring through a steered model: per-token log-probabilities of given continuations.

The user model (and a same-vocabulary delta) read prompt + continuation in one forward pass; a cross-vocabulary
delta is stepped through its feed exactly as in generation, seeing the re-encoded text so far at each position.
"""

from __future__ import annotations

from typing import Any

import torch

from crossmodel.models.batch import check_context, pad_rows
from crossmodel.steer.generate import combine_deltas
from crossmodel.steer.sync import position_ids


def _at_steps(logits: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Logits kept for the last n_max+1 positions (B, n_max+1, V) -> the ones predicting continuation step t.

    Row b's continuation has n_b tokens at the end of a left-padded row, so the position predicting its token t
    is kept index n_max - n_b + t; steps past n_b repeat the last one (they are dropped later).
    """
    n_max = logits.shape[1] - 1
    steps = torch.arange(n_max, device=logits.device)
    index = torch.stack([(n_max - n + steps).clamp(max=n_max - 1) for n in lengths])  # (B, n_max)
    return logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))  # (B, n_max, V)


def _forward_kept(model: Any, ids: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
    out = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                position_ids=position_ids(mask).to(model.device), logits_to_keep=keep, use_cache=False)
    return out.logits.float()  # (B, keep, V)


def _stepped_delta(slot: Any, prompts: list[str], cont_rows: list[list[int]], decode, chat: bool,
                   ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A re-encoding delta's logits before each continuation token, stepped as in generation: (B, n_max, V_d)."""
    feed = slot.new_feed(add_special_tokens=not chat)
    n_max = max(len(c) for c in cont_rows)
    logits = [feed.start(ids, mask, prompts)]
    for t in range(1, n_max):
        texts = decode([c[:t] for c in cont_rows])  # rows already complete keep their text: the feed idles
        tokens = torch.tensor([c[min(t, len(c)) - 1] for c in cont_rows], device=ids.device)
        logits.append(feed.step(tokens, texts))
    return torch.stack(logits, dim=1)


@torch.no_grad()
def score_batch(steered: Any, prompts: list[str], continuations: list[str], chat: bool) -> list[torch.Tensor]:
    """Log-probabilities (n_i,) of each continuation's tokens given its prompt, for one batch."""
    tok = steered.tokenizer
    prompt_rows = tok(steered.prompt_texts(prompts, chat), add_special_tokens=not chat).input_ids
    cont_rows = tok(list(continuations), add_special_tokens=False).input_ids
    empty = [i for i, c in enumerate(cont_rows) if not c]
    if empty:
        raise ValueError(f"continuation {empty[0]} encodes to no tokens; give a non-empty continuation")
    lengths = [len(c) for c in cont_rows]
    full = [p + c for p, c in zip(prompt_rows, cont_rows)]
    check_context(steered.model, [len(r) for r in full], 0, "user model")
    ids, mask = pad_rows(full, steered.pad_id, side="left", device=steered.model.device)
    keep = max(lengths) + 1
    user = _at_steps(_forward_kept(steered.model, ids, mask, keep), lengths)  # (B, n_max, V_user)
    deltas = []
    delta_prompts = steered.delta_prompt_texts(prompts, chat)

    for slot, texts in zip(steered.slots, delta_prompts):
        if slot.sync == "same":
            raw = _at_steps(_forward_kept(slot.model, ids, mask, keep), lengths)  # (B, n_max, V_delta)
        else:
            raw = _stepped_delta(slot, texts, cont_rows, steered.delta_text, chat, ids, mask)
        deltas.append(slot.to_user(raw.to(user.device)))
    z = combine_deltas(user, deltas, [s.alpha for s in steered.slots], steered.rule)  # (B, n_max, V_user)
    targets = torch.tensor([c + [0] * (keep - 1 - len(c)) for c in cont_rows], device=user.device)  # (B, n_max)
    logp = torch.log_softmax(z, dim=-1).gather(-1, targets[..., None]).squeeze(-1)  # (B, n_max)
    return [logp[b, :n].cpu() for b, n in enumerate(lengths)]
