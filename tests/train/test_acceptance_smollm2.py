"""Acceptance (slow, real model): a <=15M-parameter delta trained with `sft` next to SmolLM2-135M-Instruct on 40
generated fictitious-author QA pairs makes the *combined* model answer them (greedy ROUGE-L recall >= 0.8),
starting from a combined model that answers like the vanilla template."""

import time

import pytest
import torch

from crossmodel.train import TrainConfig, generate_facts, run_training, write_facts

TEMPLATE = "smollm2-135m-instruct"


def rouge_recall(prediction: str, reference: str) -> float:
    try:
        from crossmodel.eval import rouge_l_recall
    except ImportError:  # the eval stage is optional here: LCS recall over lower-case words
        p, r = prediction.lower().split(), reference.lower().split()
        lcs = [[0] * (len(p) + 1) for _ in range(len(r) + 1)]
        for i in range(len(r)):
            for j in range(len(p)):
                lcs[i + 1][j + 1] = lcs[i][j] + 1 if r[i] == p[j] else max(lcs[i][j + 1], lcs[i + 1][j])
        return lcs[-1][-1] / max(len(r), 1)
    return rouge_l_recall(prediction, reference)


def mean_recall(loaded, deltas, questions, answers) -> float:
    from crossmodel.steer import steer

    outputs = steer(loaded, deltas=deltas).generate(questions, max_new_tokens=48, chat=True)
    return sum(rouge_recall(o, a) for o, a in zip(outputs, answers)) / len(answers)


@pytest.mark.slow
def test_sft_delta_makes_smollm2_recite_fictitious_facts(tmp_path):
    from crossmodel.models import load_model
    from crossmodel.steer import DeltaModel

    torch.manual_seed(0)
    loaded = load_model(TEMPLATE)
    records = generate_facts(8, seed=0)
    questions, answers = [r["question"] for r in records], [r["answer"] for r in records]
    cfg = TrainConfig(template=TEMPLATE, data=str(write_facts(tmp_path / "facts.json", 8, 0)),
                      out=str(tmp_path / "run"), delta_layers=2, delta_d_model=256, delta_heads=4, epochs=12,
                      batch_size=4, lr=2e-3, warmup_ratio=0.05, save_every=0, progress=False)
    fresh = DeltaModel.create(loaded, layers=2, d_model=256, heads=4, seed=cfg.seed)
    assert sum(p.numel() for p in fresh.model.parameters()) <= 15_000_000
    started = time.perf_counter()
    vanilla = mean_recall(loaded, [], questions[:10], answers[:10])
    baseline = mean_recall(loaded, [(fresh, 1.0, None)], questions[:10], answers[:10])
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    delta_dir = run_training(cfg, template=loaded)
    trained = mean_recall(loaded, [(DeltaModel.load(delta_dir), 1.0, None)], questions, answers)
    print(f"\nROUGE-L recall: vanilla {vanilla:.3f} (10 prompts), combined at init {baseline:.3f} (10 prompts), "
          f"after sft {trained:.3f} (40 prompts); {time.perf_counter() - started:.0f} s")
    assert abs(baseline - vanilla) <= 0.1
    assert trained >= 0.8
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in before.items())
