"""Instruction tuning across models (issue 15: CMC's Table 1 at CPU scale, judged without an API), results in
docs/RESULTS.md.

Two SFT deltas are trained on the first N Alpaca records: delta A next to the base model Gemma-3-270m (the
paper's setting) and delta B next to SmolLM2-135M-Instruct read through the plain "Question: …\\nAnswer:" format
(a cross-vocabulary delta, applied to Gemma through a `normalized` map). Per user model the rows are: vanilla,
+ delta A, + delta B at several α, and the upper bound, a LoRA fine-tune of the user model on the same records.
Every row reads the plain format (BOS included where the tokenizer wants one); an instruct user model has one more
row, vanilla under its own chat template ("native chat template", the second reference). Metrics:

1. reference-answer NLL (nats per user token, over the first --answer-tokens tokens of each reference) on
   AlpacaEval items: dev = items [0, --dev-items) (α is chosen there), test = [--test-start, +--test-items);
2. EOS-stop rate and answer length of greedy answers to the first --gen-items test prompts;
3. IFEval prompt-level loose / strict on prompts [--ifeval-start, +--ifeval-items) (the first 141 are the dev
   split), with McNemar's paired p against vanilla (`crossmodel report VANILLA ROW` gives the same).

Every stage is stored in --out and skipped on a re-run (scoring and generation resume batch by batch).

    .venv/bin/python benchmarks/replicate_instruct.py --out /tmp/instruct/run --delta-a /tmp/instruct/delta-a/delta
    .venv/bin/python benchmarks/replicate_instruct.py --out /tmp/instruct/run --report        # table only
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import torch

from crossmodel.eval import resume
from crossmodel.eval.paired import paired_comparison
from crossmodel.models import PLAIN_CHAT_TEMPLATE, load_model, slug
from crossmodel.steer import DeltaModel, DeltaSpec, steer, token_map_for
from crossmodel.train import TrainConfig, train_or_reuse
from crossmodel.train.data import load_examples

from replication import cached, finetune, finish, log, machine, paired_nll_gap, write_jsonl

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
USERS = ("gemma-3-270m", "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct")
VANILLA, LORA, NATIVE = "vanilla", "LoRA fine-tune", "native chat template"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/replicate-instruct")
    p.add_argument("--alpaca", type=Path, default=SHARED / "alpaca" / "alpaca_5000.json")
    p.add_argument("--alpaca-eval", type=Path, default=SHARED / "alpaca_eval" / "alpaca_eval.json")
    p.add_argument("--ifeval", type=Path, default=SHARED / "ifeval" / "input_data.jsonl")
    p.add_argument("--nltk-data", type=Path, default=SHARED / "nltk_data")
    p.add_argument("--records", type=int, default=400, help="train on the first N Alpaca records")
    p.add_argument("--epochs", type=int, default=1, help="delta and LoRA epochs")
    p.add_argument("--template-a", default="gemma-3-270m")
    p.add_argument("--template-b", default="smollm2-135m-instruct")
    p.add_argument("--delta-a", type=Path, default=None,
                   help="a finished delta A (e.g. the `crossmodel train` line's D/delta) instead of training one")
    p.add_argument("--models", default=USERS[0], help=f"user models, comma-separated (all: {','.join(USERS)})")
    p.add_argument("--alphas-b", default="0.5,1,2", help="α of delta B swept on the dev split")
    p.add_argument("--dev-items", type=int, default=40, help="AlpacaEval items [0, N) scored for the α sweep")
    p.add_argument("--test-start", type=int, default=200)
    p.add_argument("--test-items", type=int, default=100)
    p.add_argument("--heldout-items", type=int, default=50,
                   help="also score the last N Alpaca records (never trained on: in-distribution held-out pairs)")
    p.add_argument("--answer-tokens", type=int, default=128, help="reference tokens scored per item")
    p.add_argument("--gen-items", type=int, default=16)
    p.add_argument("--gen-tokens", type=int, default=128)
    p.add_argument("--ifeval-start", type=int, default=141)
    p.add_argument("--ifeval-items", type=int, default=0, help="IFEval prompts per row (0: skip the stage)")
    p.add_argument("--ifeval-tokens", type=int, default=256)
    p.add_argument("--ifeval-rows", default=f"{VANILLA},{NATIVE},delta A a=1,delta B,{LORA}",
                   help="rows that run IFEval ('delta B': at the α chosen on dev)")
    p.add_argument("--ft-lr", type=float, default=5e-4)
    p.add_argument("--without-delta-b", action="store_true",
                   help="delta A only: no delta B rows (e.g. a data-size point of delta A against LoRA)")
    p.add_argument("--skip-lora", action="store_true", help="stop before the LoRA rows (e.g. while another "
                                                             "process fine-tunes; a re-run without it continues)")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--dtype", default="bfloat16", help="user models' dtype at evaluation (deltas stay float32)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--report", action="store_true", help="only print the tables of the finished stages")
    args = p.parse_args()
    for row in args.ifeval_rows.split(","):
        if row not in (VANILLA, NATIVE, LORA, "delta B") and not re.fullmatch(r"delta [AB] a=\d+(\.\d+)?", row):
            p.error(f"--ifeval-rows: unknown row {row!r}; rows are {VANILLA!r}, {NATIVE!r}, {LORA!r}, 'delta B' "
                    "(the α chosen on dev) or 'delta A|B a=<α>'")
    return args


# ---- data ---------------------------------------------------------------------------------------------------
def eval_items(args: argparse.Namespace) -> dict[str, list[dict]]:
    """AlpacaEval dev and test items ({instruction, output}); none is in the Alpaca training sample."""
    records = json.loads(args.alpaca_eval.read_text())
    test = records[args.test_start: args.test_start + args.test_items]
    alpaca = json.loads(args.alpaca.read_text())[-args.heldout_items:] if args.heldout_items else []
    heldout = [{"instruction": f"{r['instruction']}\n\n{r['input']}" if r["input"].strip() else r["instruction"],
                "output": r["output"]} for r in alpaca if r["output"].strip()]  # as the alpaca reader builds them
    return {"dev": records[: args.dev_items], "test": test, "heldout": heldout}


def train_files(args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    """The first N Alpaca records (alpaca format, for the deltas) and the same pairs in TOFU's question/answer
    format (for `finetune`), with the user turn exactly as the alpaca reader builds it."""
    records = json.loads(args.alpaca.read_text())[: args.records]
    alpaca = write_jsonl(records, out / "train_alpaca.jsonl")
    pairs = [{"question": ex.prompt[-1]["content"], "answer": ex.response} for ex in load_examples(alpaca, "alpaca")]
    return alpaca, write_jsonl(pairs, out / "train_qa.jsonl")


# ---- deltas -------------------------------------------------------------------------------------------------
def train_delta(args: argparse.Namespace, template_name: str, out: Path, data: Path) -> DeltaModel:
    """An SFT delta (the CLI defaults: 4 layers, d_model 256, lr 2e-3) next to a bf16 template in the plain format."""
    template = load_model(template_name, dtype=torch.bfloat16)
    template.tokenizer.chat_template = PLAIN_CHAT_TEMPLATE  # instruct templates read the plain format too
    cfg = TrainConfig(template=template_name, out=str(out), data=str(data), data_format="alpaca", task="sft",
                      epochs=args.epochs, dtype="bfloat16", seed=0, progress=False)
    start = time.time()
    delta = train_or_reuse(cfg, template)
    cached(out / "train_time.json", lambda: {"wall_s": time.time() - start,
                                             "parameters": sum(p.numel() for p in delta.model.parameters())})
    return delta


# ---- metrics ------------------------------------------------------------------------------------------------
def _cut_answer(tokenizer: Any, text: str, n: int) -> str:
    """The reference answer (leading space, as after "Answer:") cut to its first n tokens."""
    ids = tokenizer.encode(" " + text.strip(), add_special_tokens=False)[:n]
    return tokenizer.decode(ids)


def reference_nll(steered: Any, items: list[dict], folder: Path, part: str, args: argparse.Namespace) -> dict:
    """Mean NLL per reference token (token-weighted and item-mean) of the reference answers, resumable."""
    def score(batch: list[dict]) -> list[dict]:
        conts = [_cut_answer(steered.tokenizer, it["output"], args.answer_tokens) for it in batch]
        logps = steered.score([it["instruction"] for it in batch], conts, chat=True, batch_size=len(batch))
        return [{"nll": -float(lp.sum()), "tokens": len(lp)} for lp in logps]

    done = resume.load_part(folder, part)
    if done is None:
        start = time.time()
        records = resume.process(folder, part, items, score, args.batch_size)
        tokens = sum(r["tokens"] for r in records)
        done = {"summary": {"nll_per_token": sum(r["nll"] for r in records) / tokens,
                            "nll_item_mean": sum(r["nll"] / r["tokens"] for r in records) / len(records),
                            "items": len(records), "tokens": tokens, "wall_s": time.time() - start},
                "records": records}
        resume.save_part(folder, part, done)
    return done["summary"]


def eos_and_length(steered: Any, items: list[dict], folder: Path, args: argparse.Namespace) -> dict:
    """Greedy answers: share that ended by EOS within --gen-tokens, mean length in tokens; resumable."""
    eos = set(steered.eos_ids)

    def answer(batch: list[dict]) -> list[dict]:
        rows = steered.generate_ids([it["instruction"] for it in batch], args.gen_tokens, chat=True).tolist()
        out = []
        for row in rows:
            end = next((i for i, t in enumerate(row) if t in eos), None)  # after EOS a row holds padding
            kept = row if end is None else row[:end]
            out.append({"eos_stop": end is not None, "tokens": len(kept), "text": steered.text([kept])[0]})
        return out

    done = resume.load_part(folder, "generate")
    if done is None:
        start = time.time()
        records = resume.process(folder, "generate", items, answer, args.batch_size)
        done = {"summary": {"eos_stop_rate": sum(r["eos_stop"] for r in records) / len(records),
                            "mean_tokens": sum(r["tokens"] for r in records) / len(records),
                            "items": len(records), "max_new_tokens": args.gen_tokens, "wall_s": time.time() - start},
                "records": records}
        resume.save_part(folder, "generate", done)
    return done["summary"]


def ifeval_row(args: argparse.Namespace, model: str, folder: Path, prompts: Path, delta: Path | None = None,
               alpha: float = 1.0, token_map: Path | None = None, prompt_format: str = "plain") -> dict:
    """`crossmodel eval --suite ifeval` on the test prompts for one row (the CLI's own code, resumable); every row
    reads the plain format but the native-chat one."""
    from crossmodel.eval.runner import EvalConfig, run_eval

    config = EvalConfig(model=model, suite="ifeval", data=(str(prompts),), out=str(folder),
                        deltas=(str(delta),) if delta else (), alphas=(alpha,) if delta else (),
                        maps=(str(token_map) if token_map else "-",) if delta else (), baseline=False,
                        max_new_tokens=args.ifeval_tokens, batch_size=args.batch_size, prompt_format=prompt_format,
                        nltk_data=str(args.nltk_data), dtype=args.dtype)
    results = run_eval(config, log=log)
    return next(iter(results["variants"].values()))


def map_coverage(token_map: Any, tokenizer: Any, items: list[dict], n: int) -> dict:
    """How the scored reference tokens (user vocabulary) are mapped into the delta's: exact / prefix / unmapped,
    counted over token occurrences (what the scores see), next to the map's own row counts."""
    texts = [_cut_answer(tokenizer, it["output"], n) for it in items]
    ids = [t for text in texts for t in tokenizer.encode(text, add_special_tokens=False)]
    mapped = token_map.ids[ids] >= 0  # (n_tokens,)
    exact = token_map.match[ids] == 1
    total = len(ids)
    return {"scored_tokens": total, "exact": int(exact.sum()) / total,
            "prefix": int((mapped & ~exact).sum()) / total, "unmapped": int((~mapped).sum()) / total,
            "rows": token_map.coverage()}


# ---- one user model -----------------------------------------------------------------------------------------
def best_alpha(where: Path, alphas: list[float]) -> float:
    """The α of delta B with the lowest dev NLL."""
    dev = {a: json.loads((where / f"delta B a={a:g}" / "nll_dev.json").read_text())["summary"]["nll_per_token"]
           for a in alphas}
    return min(dev, key=dev.get)


def run_model(args: argparse.Namespace, out: Path, spec: str, deltas: dict[str, DeltaModel],
              qa_file: Path, items: dict[str, list[dict]], ifeval_file: Path | None) -> None:
    """Every row of one user model (results/<model>/<row>/{nll_dev,nll_test,generate}.json); without delta B
    only the rows before it."""
    where = out / "results" / slug(spec)
    dtype = getattr(torch, args.dtype)
    user = load_model(spec, dtype=dtype)
    maps = {name: token_map_for(user, d) for name, d in deltas.items()}
    alphas = [float(a) for a in args.alphas_b.split(",") if a]
    cached(where / "map_coverage.json", lambda: {
        name: map_coverage(m, user.tokenizer, items["test"], args.answer_tokens) for name, m in maps.items() if m},
        key=",".join(sorted(maps)))  # recomputed once delta B joins

    def measure(row: str, entries: list, model: Any = user, parts: tuple[str, ...] = ("test",),
                chat_template: str | None = PLAIN_CHAT_TEMPLATE) -> None:
        steered = steer(model, deltas=entries, chat_template=chat_template)
        parts = parts + ("heldout",) if "test" in parts and items["heldout"] else parts
        for part in parts:
            summary = reference_nll(steered, items[part], where / row, f"nll_{part}", args)
            log(f"  {spec} | {row} | {part} NLL {summary['nll_per_token']:.4f} ({summary['wall_s']:.0f} s)")
        if "test" in parts and args.gen_items:
            gen = eos_and_length(steered, items["test"][: args.gen_items], where / row, args)
            log(f"  {spec} | {row} | EOS-stop {gen['eos_stop_rate']:.2f}, {gen['mean_tokens']:.0f} tokens")

    measure(VANILLA, [], parts=("dev", "test"))
    if user.tokenizer.chat_template:  # an instruct model: its own chat format, the second reference
        measure(NATIVE, [], parts=("dev", "test"), chat_template=None)
    if "A" not in deltas:  # delta A still training elsewhere: the vanilla rows need no delta
        return
    measure("delta A a=1", [DeltaSpec(deltas["A"], 1.0, maps["A"])])
    if "B" in deltas:
        for alpha in alphas:
            measure(f"delta B a={alpha:g}", [DeltaSpec(deltas["B"], alpha, maps["B"])], parts=("dev",))
        chosen = best_alpha(where, alphas)
        cached(where / "alpha_b.json", lambda: {"alpha": chosen}, key=str(chosen))
        for alpha in sorted({1.0, chosen}):
            measure(f"delta B a={alpha:g}", [DeltaSpec(deltas["B"], alpha, maps["B"])], parts=("dev", "test"))
    elif not args.without_delta_b:  # delta B still to train: the LoRA rows come after it
        return
    tuned = out / "finetuned" / slug(spec)
    if args.skip_lora:
        return
    if not (tuned / "finetune.json").is_file():
        trainee = load_model(spec)  # LoRA trains on float32 weights
        cached(tuned / "finetune.json", lambda: finetune(trainee, qa_file, tuned, method="lora", epochs=args.epochs,
                                                         lr=args.ft_lr, lora_rank=args.lora_rank, max_length=512))
        del trainee
    lora = load_model(tuned, dtype=dtype)
    lora.name = f"{spec} (LoRA)"
    measure(LORA, [], model=lora, parts=("dev", "test"))
    if ifeval_file is None:
        return
    for row in args.ifeval_rows.split(","):
        if row == "delta B":  # at the α chosen on dev
            if "B" not in deltas:
                continue
            row = f"delta B a={best_alpha(where, alphas):g}"
        folder = where / row / "ifeval"
        if row == VANILLA:
            summary = ifeval_row(args, spec, folder, ifeval_file)
        elif row == LORA:
            summary = ifeval_row(args, str(tuned), folder, ifeval_file)
        elif row == NATIVE:
            if not user.tokenizer.chat_template:
                continue
            summary = ifeval_row(args, spec, folder, ifeval_file, prompt_format="own")
        else:
            name, alpha = row.split()[1], float(row.split("a=")[1])
            token_map = None
            if maps[name] is not None:
                token_map = maps[name].save(out / "maps" / f"{slug(spec)}-{name}")
            summary = ifeval_row(args, spec, folder, ifeval_file, deltas[name].path, alpha, token_map)
        log(f"  {spec} | {row} | IFEval prompt loose {summary['prompt_level_loose_acc']:.3f}")


# ---- tables -------------------------------------------------------------------------------------------------
NLL_PARTS = ("dev", "test", "heldout")


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text())["summary"] if path.is_file() else None


def _nll_parts(folder: Path) -> dict[str, dict | None]:
    """A row's stored reference-NLL results per part ({summary, records}), None where not run."""
    return {part: json.loads(f.read_text()) if (f := folder / f"nll_{part}.json").is_file() else None
            for part in NLL_PARTS}


def _loose(folder: Path) -> list[bool] | None:
    path = folder / "ifeval" / "steered" / "responses.jsonl"
    path = path if path.is_file() else folder / "ifeval" / "base" / "responses.jsonl"
    if not path.is_file():
        return None
    return [all(json.loads(line)["follow_loose"]) for line in path.read_text().splitlines() if line.strip()]


def _ifeval_cells(folder: Path, vanilla: list[bool] | None) -> str:
    results = folder / "ifeval" / "results.json"
    if not results.is_file():
        return "not run | not run | –"
    summary = next(iter(json.loads(results.read_text())["variants"].values()))
    keys = {k.split("prompt_level_")[1].split("_")[0]: v for k, v in summary.items() if k.startswith("prompt_level")}
    ours = _loose(folder)
    p = "–"
    if vanilla is not None and ours is not None and folder.name != VANILLA and len(ours) == len(vanilla):
        p = f"{paired_comparison(vanilla, ours)['p_mcnemar']:.3f}"
    return f"{keys.get('loose', float('nan')):.3f} | {keys.get('strict', float('nan')):.3f} (n={len(ours or [])}) | {p}"


def _gap(ours: dict, base: dict | None) -> str:
    """" (gap ± s.e.)" of a row's NLL part against vanilla's, paired by item; "" where there is none."""
    tokens = [r["tokens"] for r in ours["records"]]
    if base is None or base is ours or tokens != [r["tokens"] for r in base["records"]]:
        return ""
    mean, se = paired_nll_gap([a["nll"] - b["nll"] for a, b in zip(ours["records"], base["records"])], tokens)
    return f" ({mean:+.4f} ± {se:.4f})"


def _row_cells(folder: Path, vanilla: dict[str, dict | None], top: dict | None,
               vanilla_loose: list[bool] | None) -> str:
    """The cells of one row after its name: NLLs, share of LoRA's gain, EOS / length, IFEval, eval seconds."""
    parts = vanilla if folder.name == VANILLA else _nll_parts(folder)
    summaries = {part: done["summary"] if done else None for part, done in parts.items()}
    gen, base, test = _load(folder / "generate.json"), vanilla["test"], summaries["test"]
    share = "–"
    if base and top and test and folder.name not in (VANILLA, LORA, NATIVE):
        gain = base["summary"]["nll_per_token"] - top["nll_per_token"]
        share = (f"{100 * (base['summary']['nll_per_token'] - test['nll_per_token']) / gain:.0f}%" if gain > 0
                 else "n/a")

    def nll(part: str) -> str:
        done = parts[part]
        return f"{done['summary']['nll_per_token']:.4f}{_gap(done, vanilla[part])}" if done else "not run"

    eos = f"{gen['eos_stop_rate']:.2f} | {gen['mean_tokens']:.0f}" if gen else "not run | not run"
    wall = sum(s["wall_s"] for s in (*summaries.values(), gen) if s)
    cells = [nll("dev"), nll("test"), share, nll("heldout"), eos, _ifeval_cells(folder, vanilla_loose),
             f"{wall:.0f}"]
    return " | ".join(cells)


def report(args: argparse.Namespace, out: Path) -> str:
    """One markdown table: per user model and row, dev/test/held-out NLL (with the paired gap to vanilla ± its
    standard error), share of the LoRA gain, EOS, IFEval."""
    lines = ["| user model | row | dev NLL | test NLL | share of LoRA's test-NLL gain | Alpaca held-out NLL | "
             "EOS-stop | answer tokens | IFEval prompt loose | IFEval prompt strict | McNemar p vs vanilla | eval s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for spec in args.models.split(","):
        where = out / "results" / slug(spec)
        if not where.is_dir():
            continue
        rows = [VANILLA] + sorted(p.name for p in where.glob("delta [AB] a=*")) + [LORA]
        rows += [NATIVE] if (where / NATIVE).is_dir() else []
        vanilla, top = _nll_parts(where / VANILLA), _load(where / LORA / "nll_test.json")
        vanilla_loose = _loose(where / VANILLA)
        for row in rows:
            lines.append(f"| {spec} | {row} | " + _row_cells(where / row, vanilla, top, vanilla_loose) + " |")
    times = []
    for name in ("delta-a", "delta-b"):
        t = out / name / "train_time.json"
        if t.is_file():
            d = json.loads(t.read_text())
            times.append(f"{name}: {d['wall_s']:.0f} s, {d['parameters'] / 1e6:.1f}M parameters")
    for t in sorted((out / "finetuned").glob("*/finetune.json")):
        d = json.loads(t.read_text())
        times.append(f"LoRA {t.parent.name}: {d['wall_s']:.0f} s, {d['trainable_parameters'] / 1e6:.1f}M trainable, "
                     f"loss per epoch {', '.join(f'{x:.3f}' for x in d['epoch_loss'])}")
    for t in sorted((out / "results").glob("*/map_coverage.json")):
        for name, c in json.loads(t.read_text()).items():
            if isinstance(c, dict):
                times.append(f"map delta {name} -> {t.parent.name}: of {c['scored_tokens']} scored test tokens "
                             f"{c['exact']:.1%} exact, {c['prefix']:.1%} prefix, {c['unmapped']:.1%} unmapped")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {t}" for t in times)


def main() -> None:
    args = _args()
    out = Path(args.out)
    if args.report:
        print(report(args, out))
        return
    torch.set_num_threads(args.threads)
    out.mkdir(parents=True, exist_ok=True)
    alpaca_file, qa_file = train_files(args, out)
    items = eval_items(args)
    ifeval_file = None
    if args.ifeval_items:
        lines = args.ifeval.read_text().splitlines()[args.ifeval_start: args.ifeval_start + args.ifeval_items]
        ifeval_file = out / f"ifeval_{args.ifeval_start}_{args.ifeval_start + len(lines)}.jsonl"
        ifeval_file.write_text("\n".join(lines) + "\n")
    log(f"{machine()}; {args.records} Alpaca records, {len(items['dev'])} dev / {len(items['test'])} test items")
    start = time.time()
    deltas = {"A": DeltaModel.load(args.delta_a) if args.delta_a else
              train_delta(args, args.template_a, out / "delta-a", alpaca_file)}
    for spec in args.models.split(","):  # the rows that need only delta A first, not waiting for B
        run_model(args, out, spec, deltas, qa_file, items, ifeval_file)
    if not args.without_delta_b:
        deltas["B"] = train_delta(args, args.template_b, out / "delta-b", alpaca_file)
        log(f"deltas ready ({time.time() - start:.0f} s)")
        for spec in args.models.split(","):
            run_model(args, out, spec, deltas, qa_file, items, ifeval_file)
    finish(out, report(args, out), start)


if __name__ == "__main__":
    main()
