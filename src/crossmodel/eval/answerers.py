"""Short-answer adapters: a steered (or plain) model behind eval's `Evaluable` interface that answers in one line.

`Answerer` keeps the first non-empty line of each generation (a base model goes on with a new "Question:" after
answering); `QuestionAnswerer` takes bare questions and answers, as the TOFU suite passes them, and puts each in
the plain "Question: …\\nAnswer:" format, scoring each answer after a space — exactly the demo's items.
"""

from __future__ import annotations

from typing import Any

import torch

from crossmodel.models.prompt import PLAIN_PROMPT

# Base models go on with a new "Question:" after answering; some models start their answer on a new line.
STOP = ("\nQuestion", "\n\n")


class Answerer:
    """A steered model (`crossmodel.steer.steer(...)`) whose answer is the first non-empty line it generates."""

    def __init__(self, steered: Any, batch_size: int):
        self.steered, self.batch_size = steered, batch_size

    def generate(self, prompts: list[str], max_new_tokens: int = 128, do_sample: bool = False,
                 chat: bool = False) -> list[str]:
        """The first non-empty line of each generation, stripped."""
        out = self.steered.generate(prompts, max_new_tokens=max_new_tokens, do_sample=do_sample, chat=chat, stop=STOP)
        return [next((line.strip() for line in t.splitlines() if line.strip()), "") for t in out]

    def score(self, prompts: list[str], continuations: list[str], chat: bool = False) -> list[torch.Tensor]:
        """Per-token log-probabilities of each continuation (the steered model's `score`)."""
        return self.steered.score(prompts, continuations, chat=chat, batch_size=self.batch_size)


class QuestionAnswerer(Answerer):
    """`Answerer` for bare questions and answers: "Question: q\\nAnswer:" then " answer"."""

    def generate(self, prompts: list[str], max_new_tokens: int = 128, do_sample: bool = False,
                 chat: bool = False) -> list[str]:
        """Answers to bare questions, asked in the plain format."""
        return super().generate([PLAIN_PROMPT.format(question=q) for q in prompts], max_new_tokens, do_sample, chat)

    def score(self, prompts: list[str], continuations: list[str], chat: bool = False) -> list[torch.Tensor]:
        """Log-probabilities of bare answers (after a space) to bare questions in the plain format."""
        return super().score([PLAIN_PROMPT.format(question=q) for q in prompts], [" " + c for c in continuations],
                             chat)
