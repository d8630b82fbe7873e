"""Short distillation of a transplanted delta toward the original delta's mapped logits (docs/TRANSPLANT.md).

Template-free: only delta logits take part. Both deltas read the same text, each in its own tokenization; at
every *aligned boundary* (a character offset where a token ends in both tokenizations, so both have read exactly
the same prefix) the original's logits are mapped into the target vocabulary with the token map —
`token_map.gather(z_original, reduce=...)`: by default the weighted sum over a row's pieces, the transplant's own
form, or the map's own reduce, what runtime-mapped steering adds — and the transplanted delta's logits are pulled
toward them on the rows the map defines (KL of the softmaxes over those rows, or MSE of the row-centred logits:
both ignore a constant shift, which no combination rule sees). Agreement is always measured against what
runtime-mapped steering adds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from crossmodel.models.batch import pad_id, pad_rows
from crossmodel.train.combined import hidden_states, output_head
from crossmodel.train.data import FORMATS, load_examples
from crossmodel.vocab.token_map import REDUCTIONS

TEXT_FORMATS = ("text", *FORMATS)  # "text": one text per non-empty line of a plain file
_POSITION_CHUNK = 64  # aligned positions per head/loss chunk: bounds the (chunk, V_target) tensors


def _kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of the softmaxes, per position: (N, V) x 2 -> (N,)."""
    log_t, log_s = teacher.log_softmax(-1), student.log_softmax(-1)
    return (log_t.exp() * (log_t - log_s)).sum(-1)


def _mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the row-centred logits, per position: (N, V) x 2 -> (N,)."""
    centred = (student - student.mean(-1, keepdim=True)) - (teacher - teacher.mean(-1, keepdim=True))
    return centred.pow(2).mean(-1)


DISTILL_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"kl": _kl, "mse": _mse}
TRAINABLE = ("vocab", "all")  # vocab: input embeddings + output head only (the vocabulary rows); all: every weight


@dataclass(frozen=True)
class DistillConfig:
    """Settings of the alignment step (a few hundred CPU steps)."""

    steps: int = field(default=200, metadata={"help": "optimizer steps"})
    lr: float = field(default=1e-4, metadata={"help": "AdamW learning rate (the delta's weights are ~0.02 in size)"})
    batch_size: int = field(default=4, metadata={"help": "texts per step"})
    max_length: int = field(default=128, metadata={"help": "tokens per text, in either tokenization"})
    loss: str = field(default="mse", metadata={"help": f"one of {sorted(DISTILL_LOSSES)}; mse measured best "
                                                                 "(docs/TRANSPLANT.md)"})
    trainable: str = field(default="all", metadata={"help": f"one of {TRAINABLE}"})
    target_reduce: str | None = field(default="weighted_sum", metadata={
        "help": "how a one-to-many map combines the original's piece logits into the target: weighted_sum = the "
                "transplant's own form, so alignment corrects only what reading another tokenization changes "
                "(measured best, docs/TRANSPLANT.md); None = the map's own reduce, what runtime steering adds"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 = off)"})
    seed: int = field(default=0, metadata={"help": "text order"})

    def __post_init__(self):
        for name in ("steps", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"DistillConfig.{name}={getattr(self, name)} must be >= 1")
        if not self.lr > 0 or self.max_grad_norm < 0:
            raise ValueError(f"DistillConfig.lr={self.lr} must be > 0 and max_grad_norm={self.max_grad_norm} >= 0")
        if self.loss not in DISTILL_LOSSES:
            raise ValueError(f"DistillConfig.loss={self.loss!r}; choose one of {sorted(DISTILL_LOSSES)}")
        if self.trainable not in TRAINABLE:
            raise ValueError(f"DistillConfig.trainable={self.trainable!r}; choose one of {TRAINABLE}")
        if self.target_reduce not in (None, *REDUCTIONS):
            raise ValueError(f"DistillConfig.target_reduce={self.target_reduce!r}; choose None or one of {REDUCTIONS}")


def load_texts(path: str | Path, format: str = "tofu") -> list[str]:
    """Texts to distil on: `text` = the non-empty lines of a plain file; tofu / alpaca / chat records become
    their prompt messages and answer joined by newlines (no chat template: the loss is template-free)."""
    path = Path(path)
    if format not in TEXT_FORMATS:
        raise ValueError(f"format={format!r}; choose one of {TEXT_FORMATS}")
    if not path.is_file():
        raise FileNotFoundError(f"distillation data {path} not found (give a text file or a TOFU-style JSON file, "
                                "e.g. one written by crossmodel.train.write_facts)")
    if format == "text":
        texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        texts = ["\n".join([*(m["content"] for m in e.prompt), e.response]) for e in load_examples(path, format)]
    if not texts:
        raise ValueError(f"{path} holds no text to distil on")
    return texts


def _ends(tokenizer: Any, text: str, max_length: int) -> tuple[list[int], dict[int, int]]:
    """Token ids of `text` and, per character offset where a token ends, the last position ending there."""
    enc = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=max_length)
    return enc["input_ids"], {end: t for t, (_, end) in enumerate(enc["offset_mapping"])}


def aligned_positions(text: str, student_tok: Any, teacher_tok: Any, max_length: int
                      ) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """(student ids, teacher ids, [(student position, teacher position)]) at boundaries both tokenizations share.

    Position t's logits predict what follows the text up to the end of token t, so two positions whose tokens end
    at the same character have read the same text. Needs fast tokenizers (offset mappings).
    """
    if not (getattr(student_tok, "is_fast", False) and getattr(teacher_tok, "is_fast", False)):
        raise ValueError("distillation aligns positions by character offsets and needs fast tokenizers "
                         "(PreTrainedTokenizerFast / tokenizer.json) on both sides")
    s_ids, s_ends = _ends(student_tok, text, max_length)
    t_ids, t_ends = _ends(teacher_tok, text, max_length)
    pairs = sorted((s_ends[e], t_ends[e]) for e in s_ends.keys() & t_ends.keys())
    return s_ids, t_ids, pairs


@dataclass
class Aligned:
    """One batch seen by both deltas: right-padded ids of each side and the aligned (row, position) pairs."""

    student_ids: torch.Tensor  # (B, T_s)
    student_mask: torch.Tensor
    teacher_ids: torch.Tensor  # (B, T_t)
    teacher_mask: torch.Tensor
    student_at: tuple[torch.Tensor, torch.Tensor]  # (rows, positions), N each
    teacher_at: tuple[torch.Tensor, torch.Tensor]


def align_batch(texts: list[str], student_tok: Any, teacher_tok: Any, max_length: int) -> Aligned:
    """Tokenize `texts` for both deltas and collect their aligned positions."""
    s_rows, t_rows, s_at, t_at = [], [], [], []
    for b, text in enumerate(texts):
        s_ids, t_ids, pairs = aligned_positions(text, student_tok, teacher_tok, max_length)
        s_rows.append(s_ids)
        t_rows.append(t_ids)
        s_at += [(b, s) for s, _ in pairs]
        t_at += [(b, t) for _, t in pairs]
    s_ids, s_mask = pad_rows(s_rows, pad_id(student_tok))
    t_ids, t_mask = pad_rows(t_rows, pad_id(teacher_tok))
    s_index, t_index = torch.tensor(s_at).reshape(-1, 2), torch.tensor(t_at).reshape(-1, 2)
    return Aligned(s_ids, s_mask, t_ids, t_mask, (s_index[:, 0], s_index[:, 1]), (t_index[:, 0], t_index[:, 1]))


def defined_rows(token_map: Any) -> torch.Tensor:
    """Boolean (user_rows,) mask of the target rows the map gives a source logit (the rows both deltas define)."""
    if token_map.indptr is not None:
        return (token_map.indptr[1:] - token_map.indptr[:-1]) > 0
    return token_map.ids >= 0


@torch.no_grad()
def teacher_logits(teacher: torch.nn.Module, batch: Aligned) -> torch.Tensor:
    """The original delta's logits at the aligned positions, in its own vocabulary: (N, V_source)."""
    logits = teacher(input_ids=batch.teacher_ids, attention_mask=batch.teacher_mask).logits  # (B, T, V_source)
    return logits[batch.teacher_at].float()


def _chunks(batch: Aligned, hidden: torch.Tensor, teacher_at: torch.Tensor, head: Callable, token_map: Any,
            columns: torch.Tensor, reduce: str | None = None):
    """Yield (student, target) logits on the defined columns, _POSITION_CHUNK aligned positions at a time; the
    target is the teacher's logits gathered with `reduce` (None: the map's own, what runtime steering adds)."""
    rows, cols = batch.student_at
    for start in range(0, len(rows), _POSITION_CHUNK):
        part = slice(start, start + _POSITION_CHUNK)
        student = head(hidden[rows[part], cols[part]]).float().index_select(-1, columns)  # (n, V_defined)
        target = token_map.gather(teacher_at[part], reduce=reduce).index_select(-1, columns)  # (n, V_defined)
        yield student, target


def _agreement_sums(student: torch.Tensor, target: torch.Tensor, ks: tuple[int, ...]) -> dict[str, float]:
    """Summed per-position top-k overlap and Pearson r of two (n, V) logit blocks."""
    sums = {}
    for k in ks:
        s_top, t_top = student.topk(k, -1).indices, target.topk(k, -1).indices  # (n, k) each
        sums[f"top{k}"] = float((s_top[:, :, None] == t_top[:, None, :]).any(-1).float().mean(-1).sum())
    s, t = student - student.mean(-1, keepdim=True), target - target.mean(-1, keepdim=True)
    sums["pearson"] = float(((s * t).sum(-1) / (s.norm(dim=-1) * t.norm(dim=-1)).clamp_min(1e-12)).sum())
    sums["kl"] = float(_kl(student, target).sum())
    return sums


@torch.no_grad()
def logit_agreement(student: Any, teacher: Any, token_map: Any, texts: list[str], *, max_length: int = 128,
                    batch_size: int = 4, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """How well the transplanted delta (`student`, a DeltaModel) reproduces the runtime-mapped original
    (`teacher`) at aligned positions of `texts`: mean top-k overlap (|top-k ∩ top-k| / k), mean Pearson r and
    mean KL(teacher || transplant) over the rows the map defines, plus the number of positions compared."""
    columns = defined_rows(token_map).nonzero().flatten()
    head, totals, n = output_head(student.model), {}, 0
    for i in range(0, len(texts), batch_size):
        batch = align_batch(texts[i:i + batch_size], student.tokenizer, teacher.tokenizer, max_length)
        hidden = hidden_states(student.model, batch.student_ids, batch.student_mask)  # (B, T_s, D)
        for s, t in _chunks(batch, hidden, teacher_logits(teacher.model, batch), head, token_map, columns):
            for key, value in _agreement_sums(s, t, ks).items():
                totals[key] = totals.get(key, 0.0) + value
            n += len(s)
    if n == 0:
        raise ValueError("no aligned positions in the given texts (the two tokenizations share no boundary)")
    return {**{k: v / n for k, v in totals.items()}, "positions": n}


@dataclass
class DistillResult:
    """Loss per step and the number of aligned positions seen."""

    losses: list[float]
    positions: int


def _trainable(model: torch.nn.Module, which: str) -> list[torch.nn.Parameter]:
    if which == "all":
        return [p for p in model.parameters()]
    vocab = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return [p for p in model.parameters() if id(p) in vocab]


def distill(student: Any, teacher: Any, token_map: Any, texts: list[str], cfg: DistillConfig,
            on_step: Callable[[int, float], None] | None = None) -> DistillResult:
    """Pull the transplanted delta (`student`, DeltaModel in the target vocabulary) toward the original delta's
    mapped logits (`teacher`, DeltaModel in `token_map`'s delta vocabulary) on `texts`; the teacher is frozen."""
    if not texts:
        raise ValueError("no distillation texts given")
    model, loss_fn = student.model, DISTILL_LOSSES[cfg.loss]
    columns, head = defined_rows(token_map).nonzero().flatten(), output_head(model)
    params = _trainable(model, cfg.trainable)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    order, rng, losses, seen = [], random.Random(cfg.seed), [], 0
    model.train()
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:  # reshuffle every pass over the texts
            order += rng.sample(range(len(texts)), len(texts))
        picked, order = order[:cfg.batch_size], order[cfg.batch_size:]
        batch = align_batch([texts[i] for i in picked], student.tokenizer, teacher.tokenizer, cfg.max_length)
        n = len(batch.student_at[0])
        if n == 0:
            continue
        hidden = hidden_states(model, batch.student_ids, batch.student_mask)  # (B, T_s, D)
        total = 0.0
        teacher_z = teacher_logits(teacher.model, batch)
        for s, t in _chunks(batch, hidden, teacher_z, head, token_map, columns, cfg.target_reduce):
            loss = loss_fn(s, t).sum() / n
            loss.backward(retain_graph=True)  # free this chunk's (n, V) tensors; keep the trunk's graph
            total += loss.item()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(total)
        seen += n
        if on_step is not None:
            on_step(step + 1, total)
    model.eval()
    return DistillResult(losses=losses, positions=seen)
