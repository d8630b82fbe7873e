"""Peak memory of one training step (forward + backward) at Gemma-3's 262,144-token vocabulary: the naive step
(full fp32 [B, T, V] logits of template and delta, combined, log-softmax, cross-entropy) against crossmodel's
chunked step (crossmodel.train.combined). Tiny random models of that vocabulary, so the logits dominate.

Each variant runs in its own subprocess; peak = max RSS during the step minus RSS just before it.

    .venv/bin/python benchmarks/train_memory.py [--batch 2] [--length 256] [--chunk 128]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

VOCAB = 262_144  # Gemma-3


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _models(seed: int = 0):
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    template = Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=1024)).eval().requires_grad_(False)
    delta = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=1024))
    return template, delta


def _step(mode: str, batch: int, length: int, chunk: int) -> dict:
    import torch

    from crossmodel.steer.combine import combine
    from crossmodel.train.combined import combined_for_batch

    template, delta = _models()
    ids = torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    labels = ids.clone()
    labels[:, : length // 4] = -100  # a prompt without loss
    before = _rss_mib()
    if mode == "naive":
        with torch.no_grad():
            zt = template(input_ids=ids, attention_mask=mask).logits  # (B, T, V) fp32
        zd = delta(input_ids=ids, attention_mask=mask).logits  # (B, T, V) fp32, with grad
        z = combine(zt, zd)
        loss = torch.nn.functional.cross_entropy(z[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1))
    else:
        loss = -combined_for_batch(delta, ids, mask, labels, template=template, chunk_size=chunk).logprob().mean()
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "loss": float(loss), "peak_mib": peak - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=128)
    parser.add_argument("--child", choices=["naive", "chunked"])
    a = parser.parse_args()
    if a.child:
        print(json.dumps(_step(a.child, a.batch, a.length, a.chunk)))
        return
    rows = []
    for mode in ("naive", "combined"):
        done = subprocess.run([sys.executable, __file__, "--child", mode, "--batch", str(a.batch), "--length",
                               str(a.length), "--chunk", str(a.chunk)], capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    one_copy = a.batch * a.length * VOCAB * 4 / 2**20
    print(f"vocab {VOCAB}, batch {a.batch}, length {a.length}, chunk {a.chunk}; "
          f"one fp32 [B, T, V] tensor = {one_copy:.0f} MiB")
    print(f"{'step':<10}{'peak MiB':>10}{'loss':>10}")
    for r in rows:
        print(f"{r['mode']:<10}{r['peak_mib']:>10.0f}{r['loss']:>10.4f}")
    print(f"chunked / naive = {rows[1]['peak_mib'] / rows[0]['peak_mib']:.3f}")


if __name__ == "__main__":
    main()
