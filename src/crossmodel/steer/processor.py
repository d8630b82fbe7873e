"""Steering inside `transformers` generate: a LogitsProcessor that adds the deltas to the user's scores.

    proc = steered.logits_processor(prompts)
    out = user_model.generate(**proc.inputs, logits_processor=[proc], do_sample=False, max_new_tokens=64)

Each call receives the ids so far and the user's next-token scores; the processor steps every delta's feed
(the same feeds as the native loop, so greedy tokens are identical) and returns the combined scores.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch
from transformers import LogitsProcessor

from crossmodel.steer.generate import combine_deltas

if TYPE_CHECKING:  # steered.py imports this module
    from crossmodel.steer.steered import Steered


class CMCLogitsProcessor(LogitsProcessor):
    """Cross-model Control as a `transformers.LogitsProcessor` for one batch of prompts."""

    def __init__(self, steered: Steered, prompts: Sequence[str], chat: bool = False):
        self.steered, self.chat = steered, chat
        self.inputs = steered.encode(list(prompts), chat)  # left-padded {input_ids, attention_mask}
        self.delta_prompts = steered.delta_prompt_texts(list(prompts), chat)
        self.prompt_len = self.inputs["input_ids"].shape[1]
        self.feeds: list[Any] = []
        self.delta_logits: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] < self.prompt_len or input_ids.shape[0] != self.inputs["input_ids"].shape[0]:
            raise ValueError("this CMCLogitsProcessor was built for other inputs: call generate(**proc.inputs, ...) "
                             "with one processor per batch of prompts (and num_beams=1, num_return_sequences=1)")
        if input_ids.shape[1] == self.prompt_len:  # first step of a (new) generate call: run the prompts
            self.feeds = [slot.new_feed(add_special_tokens=not self.chat) for slot in self.steered.slots]
            mask = self.inputs["attention_mask"]
            self.delta_logits = [feed.start(input_ids, mask, prompts)
                                 for feed, prompts in zip(self.feeds, self.delta_prompts)]
        else:
            texts = self.steered.delta_text(input_ids[:, self.prompt_len:].tolist())
            self.delta_logits = [feed.step(input_ids[:, -1], texts) for feed in self.feeds]
        slots = self.steered.slots
        deltas = [s.to_user(d.to(scores.device)) for s, d in zip(slots, self.delta_logits)]
        return combine_deltas(scores, deltas, [s.alpha for s in slots], self.steered.rule)
