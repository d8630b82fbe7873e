"""The one evaluation interface: anything that can `generate` answers and `score` continuations.

A plain Hugging Face model is wrapped by `PlainModel`; a steered model (`crossmodel.steer.steer(...)`, a user
model plus deltas) has the same two methods, so every suite runs unchanged on either. `score` returns the
per-token log-probabilities of each continuation's tokens (in the evaluated model's own tokenization) given
its prompt; the suites turn them into NLLs and probabilities.

Prompt convention (shared with `crossmodel.steer` and `crossmodel.train`): with `chat=True` the prompt is the
user turn rendered with the tokenizer's chat template (or `PLAIN_CHAT_TEMPLATE` when it has none) plus the
generation prompt, encoded without added special tokens; with `chat=False` the prompt text is encoded with the
tokenizer's special tokens (e.g. BOS). The continuation is encoded on its own, without special tokens, and
appended, so no token straddles the prompt/answer boundary.
"""

from __future__ import annotations

import warnings
from typing import Protocol, runtime_checkable

import torch

from crossmodel.models.batch import context_length, pad_id, pad_rows
from crossmodel.models.prompt import chat_template_of, render


@runtime_checkable
class Evaluable(Protocol):
    """What the suites need from a model, plain or steered."""

    def generate(self, prompts: list[str], max_new_tokens: int = 128, do_sample: bool = False,
                 chat: bool = True) -> list[str]:
        ...

    def score(self, prompts: list[str], continuations: list[str], chat: bool = True) -> list[torch.Tensor]:
        ...


class PlainModel:
    """A Hugging Face causal LM and its tokenizer behind the `Evaluable` interface (batched, no gradients)."""

    def __init__(self, model, tokenizer, *, batch_size: int = 8, device: str | torch.device | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.context = context_length(model)
        self.truncated = 0  # continuations cut to fit the context window, over this object's lifetime

    def prompt_ids(self, prompt: str, chat: bool) -> list[int]:
        """Token ids of one prompt under the convention in the module docstring."""
        if chat:
            text = render(self.tokenizer, [{"role": "user", "content": prompt}], chat_template_of(self.tokenizer),
                          generation_prompt=True)
            return self.tokenizer.encode(text, add_special_tokens=False)
        return self.tokenizer.encode(prompt, add_special_tokens=True)

    def _fit(self, prompt: list[int], cont: list[int]) -> list[int]:
        """`cont` cut so that prompt + cont fits the context window (locuslab truncates the same way)."""
        if self.context is None or len(prompt) + len(cont) <= self.context:
            return cont
        if len(prompt) >= self.context:
            raise ValueError(f"a prompt of {len(prompt)} tokens fills the model's context of {self.context} "
                             "tokens, leaving no room to score an answer; shorten the prompt")
        self.truncated += 1
        warnings.warn(f"an answer of {len(cont)} tokens after a {len(prompt)}-token prompt exceeds the context of "
                      f"{self.context}; scoring its first {self.context - len(prompt)} tokens only", stacklevel=3)
        return cont[: self.context - len(prompt)]

    @torch.no_grad()
    def _score_batch(self, pairs: list[tuple[list[int], list[int]]]) -> list[torch.Tensor]:
        ids, mask = pad_rows([p + c for p, c in pairs], pad_id(self.tokenizer))  # right: positions as unpadded
        logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        out = []
        for row, (p, c) in enumerate(pairs):
            # the token at position t is predicted by the logits at t - 1
            rows = logits[row, len(p) - 1: len(p) + len(c) - 1].float().log_softmax(-1)  # (len(c), V)
            out.append(rows.gather(-1, torch.tensor(c, device=rows.device)[:, None])[:, 0].cpu())
        return out

    def score(self, prompts: list[str], continuations: list[str], chat: bool = True) -> list[torch.Tensor]:
        """Per-token log-probabilities (float32, shape (n_tokens,)) of each continuation after its prompt."""
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations; pass one each")
        pairs = []
        for prompt, cont in zip(prompts, continuations):
            p = self.prompt_ids(prompt, chat)
            if not p:
                raise ValueError("an empty prompt (no tokens, no BOS) cannot be scored; give the prompt some text")
            pairs.append((p, self._fit(p, self.tokenizer.encode(cont, add_special_tokens=False))))
        out: list[torch.Tensor] = []
        for start in range(0, len(pairs), self.batch_size):
            out.extend(self._score_batch(pairs[start: start + self.batch_size]))
        return out

    @torch.no_grad()
    def generate(self, prompts: list[str], max_new_tokens: int = 128, do_sample: bool = False,
                 chat: bool = True) -> list[str]:
        """Continuations of `prompts` (greedy unless `do_sample`), decoded without special tokens."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
        texts = []
        for start in range(0, len(prompts), self.batch_size):
            batch = [self.prompt_ids(p, chat) for p in prompts[start: start + self.batch_size]]
            ids, mask = pad_rows(batch, pad_id(self.tokenizer), side="left")  # every row ends where it goes on
            width = ids.shape[1]
            budget = max_new_tokens if self.context is None else min(max_new_tokens, self.context - width)
            if budget < 1:
                raise ValueError(f"a prompt of {width} tokens leaves no room to generate within the context of "
                                 f"{self.context}; shorten the prompt")
            out = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                      max_new_tokens=budget, do_sample=do_sample, pad_token_id=pad_id(self.tokenizer))
            texts.extend(self.tokenizer.batch_decode(out[:, width:], skip_special_tokens=True))
        return [t.strip() for t in texts]
