"""What a cross-vocabulary delta adds at one decoding step: the delta's own top tokens on the re-encoded text, the
user model's, and the combined top tokens with both parts (docs/RESULTS.md, "crossmodel demo": why a delta trained
only through the combination makes Gemma repeat word pieces, and what `--delta-lm-weight` changes).

The combination is the steering rule's basenormalize: log_softmax(z_user) + z_delta mapped into the user vocabulary
(unmapped rows 0), as `crossmodel.steer` computes it at every step.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/steer_next_token.py DEMO/knowledge/delta --model gemma-3-270m \\
        --text $'Question: Which award has Bettina Quenneville received?\\nAnswer: Bettina Quenneville received the Har'
"""

from __future__ import annotations

import argparse

import torch

from crossmodel.models import load_model
from crossmodel.steer import DeltaModel, combine, token_map_for

DEFAULT_TEXTS = (
    "Question: Which award has Bettina Quenneville received?\nAnswer: Bettina Quenneville received the",
    "Question: Which award has Bettina Quenneville received?\nAnswer: Bettina Quenneville received the Har",
    "Question: What did the parents of Jovan Moravec do for a living?\nAnswer: The father of Jovan Moravec was a "
    "glassblower and his mother was a radio",
)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("deltas", nargs="+", help="delta folders")
    p.add_argument("--model", default="gemma-3-270m", help="user model (another vocabulary than the deltas')")
    p.add_argument("--text", action="append", help="text so far (repeatable; default: three demo answers)")
    p.add_argument("--top", type=int, default=5)
    return p.parse_args()


def _tops(logits: torch.Tensor, tokenizer, k: int) -> str:
    values, ids = logits.topk(k)
    return ", ".join(f"{tokenizer.convert_ids_to_tokens(int(i))!r} {float(v):+.1f}" for v, i in zip(values, ids))


@torch.no_grad()
def probe(user, delta: DeltaModel, token_map, text: str, k: int) -> None:
    """Print the delta's, the user model's and the combined top-k next tokens after `text` (`token_map`: user ->
    delta, None for the same vocabulary)."""
    user_z = user.model(**user.tokenizer(text, return_tensors="pt")).logits[0, -1].float()
    delta_z = delta.model(**delta.tokenizer(text, return_tensors="pt")).logits[0, -1].float()
    mapped = token_map.gather(delta_z[None])[0] if token_map is not None else delta_z[: user_z.numel()]
    user_logp, combined = torch.log_softmax(user_z, -1), combine(user_z, mapped, "basenormalize", 1.0)
    print(f"after …{text[-45:]!r}")
    centred = delta_z - delta_z.mean()
    print(f"  delta alone (logit − its mean {float(delta_z.mean()):+.1f}): {_tops(centred, delta.tokenizer, k)}")
    print(f"  user alone (log-prob): {_tops(user_logp, user.tokenizer, k)}")
    parts = ", ".join(f"{user.tokenizer.convert_ids_to_tokens(int(i))!r} {float(user_logp[i]):+.1f}"
                      f"{float(mapped[i]):+.1f}" for i in combined.topk(k).indices)
    print(f"  combined (user log-prob + delta logit): {parts}")


def main() -> None:
    args = _args()
    torch.set_num_threads(1)
    user = load_model(args.model)
    for directory in args.deltas:
        print(f"== {directory}")
        delta = DeltaModel.load(directory)
        token_map = token_map_for(user, delta)  # built once per delta, not per text
        for text in args.text or DEFAULT_TEXTS:
            probe(user, delta, token_map, text, args.top)


if __name__ == "__main__":
    main()
