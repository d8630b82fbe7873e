"""Why cross-vocabulary answers loop, measured (issue 26): one facts delta on a user model of another vocabulary,
under candidate steering rules, with the share of degenerate answers, ROUGE-L and teacher-forced answer NLL.

Every question of a facts file (`crossmodel facts`) is answered greedily (64 new tokens, the plain-format prompt
for a base model), the answer is cut at the stop rule `crossmodel eval` uses (a new "Question" or a blank line) and
judged by `crossmodel.eval.metrics.degenerate`; ROUGE-L recall of the first line against the reference answer.
`--nll` prints the mean per-token NLL of the reference answers instead (teacher-forced, the user's tokenization).
Candidate rules (`--variants`, comma-separated): `a1`, `a05`, `a03`, `a0` (α); `exact` (the delta only on exact
map rows); `top50`, `top10`, `top5` (only inside the user model's top-k); `unsure` (only where the user's top-1
probability < 0.3, as Nudging does); `ext0` (rows whose user token extends past its delta token get 0);
`pen1`, `pen2`, `pen4` (those rows lose 1 / 2 / 4 nats: `steer(..., extension_penalty=…)`).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fluent_transfer.py --facts data/facts.json \
        --delta runs/sft/delta --model gemma-3-270m --variants a1,exact,pen2
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import crossmodel.steer.generate as generate_module
import crossmodel.steer.score as score_module
import crossmodel.steer.steered as steered_module
from crossmodel.eval.answerers import STOP
from crossmodel.eval.metrics import degenerate, rouge_l_recall
from crossmodel.models import PLAIN_CHAT_TEMPLATE, load_model
from crossmodel.steer import DeltaModel, steer, token_map_for
from crossmodel.vocab import TokenMap

VARIANTS = {
    "a1": {"alpha": 1.0}, "a05": {"alpha": 0.5}, "a03": {"alpha": 0.3}, "a0": {"alpha": 0.0},
    "exact": {"exact": True}, "top50": {"topk": 50}, "top10": {"topk": 10}, "top5": {"topk": 5},
    "unsure": {"unsure": 0.3}, "ext0": {"ext0": True}, "pen1": {"penalty": 1.0}, "pen2": {"penalty": 2.0},
    "pen4": {"penalty": 4.0},
}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--facts", required=True, help="a facts file (crossmodel facts): the questions and answers")
    p.add_argument("--delta", required=True)
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--variants", default="a1")
    p.add_argument("--plain", action="store_true", help="the user model reads the plain format (else: auto)")
    p.add_argument("--own", action="store_true", help="the user model reads its own chat template whatever the delta's")
    p.add_argument("--nll", action="store_true", help="teacher-forced answer NLL instead of generation")
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--map-mode", default="normalized", help="normalized | first-piece (one-to-many, one piece: the "
                                                              "delta piece that starts each user token's text)")
    return p.parse_args()


def gated_combination(state: dict, extends: torch.Tensor | None, exact: torch.Tensor | None):
    """A `combine_deltas` (basenormalize, one delta) that applies the gate of `state["variant"]`."""
    def combine(user_logits, deltas, alphas, rule):
        v, z_delta = state["variant"], deltas[0]
        logp = torch.log_softmax(user_logits.float(), -1)
        if v.get("exact"):
            z_delta = z_delta * exact[: z_delta.shape[-1]].to(z_delta.dtype)  # (B, V_user): 0 off exact rows
        if v.get("ext0"):
            z_delta = z_delta.masked_fill(extends[: z_delta.shape[-1]].bool(), 0.0)
        if v.get("topk"):
            kth = logp.topk(v["topk"], -1).values[..., -1:]  # (B, 1)
            z_delta = torch.where(logp >= kth, z_delta, torch.zeros_like(z_delta))
        if v.get("unsure"):
            top1 = logp.max(-1, keepdim=True).values.exp()  # (B, 1)
            z_delta = torch.where(top1 < v["unsure"], z_delta, torch.zeros_like(z_delta))
        return logp + alphas[0] * z_delta
    return combine


def main() -> None:
    args = _args()
    torch.set_num_threads(1)
    facts = [json.loads(line) for line in open(args.facts, encoding="utf-8") if line.strip()]  # JSON lines
    questions, answers = [f["question"] for f in facts], [f["answer"] for f in facts]
    user, delta = load_model(args.model), DeltaModel.load(args.delta)
    if args.plain:
        user.tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    token_map = token_map_for(user, delta)
    if token_map is not None and args.map_mode == "first-piece":
        token_map = TokenMap.build(user.tokenizer, delta.tokenizer, mode="one-to-many", max_pieces=1,
                                   user_rows=token_map.user_rows, delta_rows=token_map.delta_rows)
    if token_map is not None:
        token_map.with_extensions(user.tokenizer, delta.tokenizer)  # none for a one-to-many map
    state: dict = {}
    combine = gated_combination(state, getattr(token_map, "extends", None), getattr(token_map, "match", None))
    for module in (generate_module, steered_module, score_module):  # every path that combines
        module.combine_deltas = combine
    for name in args.variants.split(","):
        variant = VARIANTS[name]
        state["variant"] = variant
        steered = steer(user, deltas=[(delta, variant.get("alpha", 1.0), token_map)],
                        extension_penalty=variant.get("penalty", 0.0),
                        chat_template=user.tokenizer.chat_template if args.own else None)
        start = time.time()
        if args.nll:
            space = " " if steered.chat_template == PLAIN_CHAT_TEMPLATE or not user.tokenizer.chat_template else ""
            logprobs = steered.score(questions, [space + a for a in answers], chat=True)
            nll = sum(float(-lp.sum()) for lp in logprobs) / sum(lp.numel() for lp in logprobs)
            print(f"{args.model} {name}: answer NLL {nll:.4f} per token", flush=True)
            continue
        outs = [t for i in range(0, len(questions), 10) for t in steered.generate(questions[i:i + 10], args.tokens,
                                                                                  chat=True)]
        cut = [min((o.split(s)[0] for s in STOP), key=len) for o in outs]
        first = [next((line.strip() for line in c.splitlines() if line.strip()), "") for c in cut]
        rouge = sum(rouge_l_recall(f, a) for f, a in zip(first, answers)) / len(outs)
        print(f"{args.model} {name}: degenerate {sum(map(degenerate, cut))}/{len(outs)}, ROUGE-L {rouge:.3f} "
              f"({time.time() - start:.0f} s)", flush=True)
        for question, answer in zip(questions, cut):
            if degenerate(answer) or "Jovan Moravec born" in question:
                print(f"    {question[:50]!r}: {answer[:120]!r}")


if __name__ == "__main__":
    main()
