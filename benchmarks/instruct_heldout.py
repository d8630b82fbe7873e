"""Why an instruction delta helps or hurts held-out text (issue 15's diagnosis): the reference NLL of Gemma-3-270m
with and without SFT deltas, on AlpacaEval's dev items and on held-out Alpaca records, and on the held-out records
split by whether the target token occurs in the delta's training answers ("seen") or not ("unseen").

Same text as benchmarks/replicate_instruct.py: the plain "Question: …\\nAnswer:" format (instruct user models too,
as the deltas were trained) with the model's BOS, the first --answer-tokens tokens of each reference answer, the user
model in bfloat16, the deltas in float32. Every row's gap to vanilla comes with its standard error over items (the
same items, paired). A delta of another vocabulary is applied through a `normalized` token map built on the fly;
for such a delta a second table splits the gap at the positions where the user's token starts at one of the delta's
token boundaries and where it starts inside a delta token. `--oracle BASE TUNED` adds the row "user model + the
fine-tune's own shift" (e.g. the template's LoRA fine-tune minus the template): what a delta next to BASE that
learned that fine-tune's shift exactly would transfer. `--restrict` adds oracle rows with the shift s = z_tuned −
z_base restricted (issue 26, "why the shift does not cross families"): `support` keeps s only on the tokens of the
tuned model's top-p 0.9 nucleus (where the fine-tune was trained to put probability), `clip` floors s at −2 nats,
`positive` keeps only boosts (s ≥ 0), `top20` keeps the 20 largest entries of s per position; elsewhere s = 0.
Across vocabularies the nucleus is taken over the mapped rows (a row per user token), an approximation.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/instruct_heldout.py D1/delta D2/delta --records 400 \
        --heldout-items 200 --test-items 200:300
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/instruct_heldout.py --model smollm2-135m-instruct \
        --oracle gemma-3-270m RUN/finetuned/gemma-3-270m --test-items 200:300 --restrict support,clip,positive,top20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import crossmodel.steer.score as score_module
from crossmodel.models import PLAIN_CHAT_TEMPLATE, load_model
from crossmodel.steer import DeltaConfig, DeltaModel, DeltaSpec, combine_deltas, steer, token_map_for

from replicate_instruct import SHARED, _cut_answer
from replication import log, machine, paired_nll_gap


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("deltas", nargs="*", type=Path, help="delta folders (none: vanilla only)")
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--restrict", type=lambda s: [k for k in s.split(",") if k], default=[],
                   help=f"with --oracle: restricted shifts to add as rows, comma-separated: {','.join(RESTRICTIONS)}")
    p.add_argument("--oracle", nargs=2, metavar=("BASE", "TUNED"), default=None,
                   help="one more row: the user model plus a fine-tune's own shift, TUNED - BASE (e.g. a template "
                        "and its LoRA fine-tune), through a map when their vocabulary is another: what a delta that "
                        "learned that shift exactly would transfer")
    p.add_argument("--alpaca", type=Path, default=SHARED / "alpaca" / "alpaca_5000.json")
    p.add_argument("--alpaca-eval", type=Path, default=SHARED / "alpaca_eval" / "alpaca_eval.json")
    p.add_argument("--records", type=int, default=400, help="the deltas were trained on the first N Alpaca records")
    p.add_argument("--dev-items", type=int, default=40, help="AlpacaEval items [0, N)")
    p.add_argument("--heldout-items", type=int, default=50, help="the last N Alpaca records")
    p.add_argument("--test-items", default="", help="AlpacaEval items START:END as a test split (e.g. 200:300, "
                                                     "replicate_instruct's); empty = none")
    p.add_argument("--answer-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    unknown = [k for k in args.restrict if k not in RESTRICTIONS]
    if unknown or (args.restrict and not args.oracle):
        p.error(f"--restrict {','.join(args.restrict)}: restrictions of the --oracle shift, from {','.join(RESTRICTIONS)}")
    for flag in ("dev_items", "heldout_items"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1")
    return args


def _instruction(r: dict) -> str:
    return f"{r['instruction']}\n\n{r['input']}" if r["input"].strip() else r["instruction"]  # as the alpaca reader


def shift_as_deltas(base: str, tuned: str, alpha: float) -> list[tuple[DeltaModel, float]]:
    """A fine-tune's own logit shift as two deltas, (TUNED, +alpha) and (BASE, -alpha): added to a user model under
    the base-normalize rule they add alpha * (z_tuned - z_base): what a delta next to BASE would add if it had learned
    that fine-tune exactly. Both in bfloat16, as the user model (on BASE itself the row reproduces TUNED's)."""
    out = []
    for spec, sign in ((tuned, 1.0), (base, -1.0)):
        loaded = load_model(spec, dtype=torch.bfloat16)
        config = DeltaConfig(template=base, vocab_fingerprint=loaded.fingerprint, task="oracle")
        out.append((DeltaModel(loaded.model, loaded.tokenizer, config), sign * alpha))
    return out


RESTRICTIONS = ("support", "clip", "positive", "top20")
NUCLEUS, CLIP, TOP_K = 0.9, -2.0, 20


def restricted_shift(kind: str):
    """A `combine_deltas` for the oracle's two deltas (TUNED at +α, BASE at −α): log_softmax(z_user) + s with the
    shift s = α (z_tuned − z_base) restricted by `kind` (RESTRICTIONS)."""
    def combine(user_logits, deltas, alphas, rule):
        tuned, base = deltas[0].float(), deltas[1].float()  # (..., V_user) each
        shift = alphas[0] * (tuned - base)
        if kind == "support":
            probs = torch.softmax(tuned, dim=-1)
            ordered = probs.sort(dim=-1, descending=True).values
            inside = (ordered.cumsum(-1) - ordered) < NUCLEUS  # the nucleus, in sorted order
            floor = ordered.masked_fill(~inside, float("inf")).amin(-1, keepdim=True)  # smallest probability in it
            shift = torch.where(probs >= floor, shift, torch.zeros_like(shift))
        elif kind == "clip":
            shift = shift.clamp(min=CLIP)
        elif kind == "positive":
            shift = shift.clamp(min=0.0)
        elif kind == "top20":
            kth = shift.topk(TOP_K, dim=-1).values[..., -1:]
            shift = torch.where(shift >= kth, shift, torch.zeros_like(shift))
        return torch.log_softmax(user_logits.float(), dim=-1) + shift
    return combine


def token_logprobs(steered, items: list[dict], args: argparse.Namespace) -> list[tuple[list[int], list[float]]]:
    """(target ids, log-probs) of every item's cut reference answer."""
    out = []
    for i in range(0, len(items), args.batch_size):
        batch = items[i:i + args.batch_size]
        conts = [_cut_answer(steered.tokenizer, it["output"], args.answer_tokens) for it in batch]
        scores = steered.score([it["instruction"] for it in batch], conts, chat=True, batch_size=len(batch))
        for cont, lp in zip(conts, scores):
            ids = steered.tokenizer.encode(cont, add_special_tokens=False)
            if len(ids) != len(lp):
                raise ValueError(f"{len(ids)} target ids but {len(lp)} scores for {cont[:40]!r}")
            out.append((ids, lp.tolist()))
    return out


def summary(scored: list[tuple[list[int], list[float]]], seen: set[int]) -> dict[str, float]:
    """NLL per token overall, on seen and on unseen target tokens, and the unseen share of positions."""
    pairs = [(t in seen, -lp) for ids, lps in scored for t, lp in zip(ids, lps)]
    seen_nll = [n for s, n in pairs if s]
    unseen_nll = [n for s, n in pairs if not s]
    return {"nll": sum(n for _, n in pairs) / len(pairs), "seen": sum(seen_nll) / max(1, len(seen_nll)),
            "unseen": sum(unseen_nll) / max(1, len(unseen_nll)), "unseen_share": len(unseen_nll) / len(pairs)}


def inside_delta_token(user_tokenizer, delta_tokenizer, text: str) -> list[bool]:
    """Per user token of `text`: True where it starts inside a token of the delta's own tokenization of `text` —
    the delta then reads a context that ends mid-token, a segmentation it never saw in training."""
    def spans(tokenizer):
        return tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]

    starts = {start for start, _ in spans(delta_tokenizer)}
    return [start not in starts for start, _ in spans(user_tokenizer)]


def masked(scored: list[tuple[list[int], list[float]]], masks: list[list[bool]]) -> list[tuple[list[int], list[float]]]:
    """Only the positions whose mask is True, item by item."""
    return [([t for t, m in zip(ids, mask) if m], [lp for lp, m in zip(lps, mask) if m])
            for (ids, lps), mask in zip(scored, masks)]


def paired_gap(scored: list[tuple[list[int], list[float]]], base: list[tuple[list[int], list[float]]]) -> str:
    """Per-token NLL of `scored` minus `base` on the same items, ± its standard error (`paired_nll_gap`), e.g.
    "-0.0070 ± 0.0031"."""
    gaps = [sum(-a for a in lp) - sum(-b for b in lb) for (_, lp), (_, lb) in zip(scored, base)]
    mean, se = paired_nll_gap(gaps, [len(lp) for _, lp in scored])
    return f"{mean:+.4f} ± {se:.4f}"


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    log(machine())
    user = load_model(args.model, dtype=torch.bfloat16)
    tok = user.tokenizer
    alpaca = json.loads(args.alpaca.read_text())
    seen = {t for r in alpaca[: args.records] for t in tok.encode(" " + r["output"].strip(), add_special_tokens=False)}
    alpaca_eval = json.loads(args.alpaca_eval.read_text())
    dev = alpaca_eval[: args.dev_items]
    held = [{"instruction": _instruction(r), "output": r["output"]} for r in alpaca[-args.heldout_items:]
            if r["output"].strip()]
    start_end = [int(x) for x in args.test_items.split(":")] if args.test_items else []
    test = alpaca_eval[slice(*start_end)] if start_end else []
    loaded = [(str(d), DeltaModel.load(d)) for d in args.deltas]  # another vocabulary: a normalized map on the fly
    rows = [("vanilla", [])] + [(name, [DeltaSpec(delta, alpha=args.alpha, token_map=token_map_for(user, delta))])
                                for name, delta in loaded]
    restrictions = {}
    if args.oracle:
        pair = shift_as_deltas(*args.oracle, args.alpha)
        token_map = token_map_for(user, pair[0][0])  # one map: TUNED and BASE share a vocabulary (steer checks it)
        oracle = f"oracle shift: {args.oracle[1]} - {args.oracle[0]}"
        for kind in ["", *args.restrict]:
            name = f"{oracle}, {kind}" if kind else oracle
            rows.append((name, [DeltaSpec(d, a, token_map) for d, a in pair]))
            restrictions[name] = kind
    test_head = f" test NLL ({args.test_items}) | test gap ± s.e. |" if test else ""
    print(f"| row | dev NLL | dev gap to vanilla ± s.e. | held-out NLL | held-out gap ± s.e. |{test_head} held-out, seen "
          "tokens | held-out, unseen tokens | unseen share | s |")
    print("|---" * (9 + 2 * bool(test)) + "|")
    vanilla, splits = None, []
    for name, deltas in rows:
        start = time.time()
        # instruct models read the plain format too; the oracle's shift cancels any extension penalty, so none
        steered = steer(user, deltas=deltas, chat_template=PLAIN_CHAT_TEMPLATE,
                        **({"extension_penalty": 0.0} if name in restrictions else {}))
        score_module.combine_deltas = restricted_shift(restrictions[name]) if restrictions.get(name) else combine_deltas
        scored = [token_logprobs(steered, items, args) for items in (dev, held, test)]
        vanilla = vanilla or scored
        d, h = summary(scored[0], seen), summary(scored[1], seen)
        test_cells = f" {summary(scored[2], seen)['nll']:.4f} | {paired_gap(scored[2], vanilla[2])} |" if test else ""
        print(f"| {name} | {d['nll']:.4f} | {paired_gap(scored[0], vanilla[0])} | {h['nll']:.4f} | "
              f"{paired_gap(scored[1], vanilla[1])} |{test_cells} {h['seen']:.3f} | {h['unseen']:.3f} | "
              f"{h['unseen_share']:.2f} | {time.time() - start:.0f} |", flush=True)
        if deltas and deltas[0].token_map is not None:
            splits.append((name, deltas[0].delta.tokenizer, scored))
    if splits:  # where the cross-vocabulary gap comes from: contexts cut at the delta's token boundaries or inside
        print("\n| cross-vocabulary row | part | share of positions inside a delta token | gap at delta-token "
              "boundaries ± s.e. | gap inside delta tokens ± s.e. |\n|---|---|---|---|---|")
    for name, delta_tokenizer, scored in splits:
        for part, items, rows_scored, base in zip(("held-out", "test"), (held, test), scored[1:], vanilla[1:]):
            if not items:
                continue
            conts = [_cut_answer(tok, it["output"], args.answer_tokens) for it in items]
            inside = [inside_delta_token(tok, delta_tokenizer, c) for c in conts]
            at_edge = [[not x for x in mask] for mask in inside]
            share = sum(map(sum, inside)) / sum(map(len, inside))
            print(f"| {name} | {part} | {share:.2f} | {paired_gap(masked(rows_scored, at_edge), masked(base, at_edge))} | "
                  f"{paired_gap(masked(rows_scored, inside), masked(base, inside))} |", flush=True)


if __name__ == "__main__":
    main()
