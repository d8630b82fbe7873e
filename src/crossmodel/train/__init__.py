"""crossmodel.train stage: train a delta next to a frozen template (docs/TRAINING.md) — data and chat templates,
a fictitious-facts generator, the six losses on the combined model, the chunked memory-safe loss, the
template-logit cache, and the resumable training loop.

The names below are imported on first use (PEP 562), so that `crossmodel.train.config` — read by the command
line for its help texts — loads without torch.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

# public name -> the module of this stage that defines it
_HOMES = {
    **dict.fromkeys(["CombinedStats", "combined_for_batch", "loss_positions", "output_head"], "combined"),
    **dict.fromkeys(["TrainConfig"], "config"),
    **dict.fromkeys(["FORMATS", "Batch", "Encoded", "Example", "collate", "encode_examples", "load_examples",
                     "with_idk_answers"], "data"),
    **dict.fromkeys(["generate_facts", "write_facts"], "facts"),
    **dict.fromkeys(["LOSSES", "NPO_BETA", "get_loss"], "losses"),
    **dict.fromkeys(["TrainResult", "evaluate", "train"], "loop"),
    **dict.fromkeys(["run_training", "train_or_reuse", "write_fact_splits"], "recipe"),
    **dict.fromkeys(["StackedTemplate"], "stacked"),
    **dict.fromkeys(["TemplateCache"], "template_cache"),
    **dict.fromkeys(["IDK_ANSWERS", "IGNORE_INDEX"], "templates"),
}
__all__ = sorted(_HOMES)

if TYPE_CHECKING:
    from crossmodel.train.combined import CombinedStats, combined_for_batch, loss_positions, output_head  # noqa: F401
    from crossmodel.train.config import TrainConfig  # noqa: F401
    from crossmodel.train.data import (FORMATS, Batch, Encoded, Example, collate, encode_examples,  # noqa: F401
                                       load_examples, with_idk_answers)
    from crossmodel.train.facts import generate_facts, write_facts  # noqa: F401
    from crossmodel.train.losses import LOSSES, NPO_BETA, get_loss  # noqa: F401
    from crossmodel.train.loop import TrainResult, evaluate, train  # noqa: F401
    from crossmodel.train.recipe import run_training, train_or_reuse, write_fact_splits  # noqa: F401
    from crossmodel.train.stacked import StackedTemplate  # noqa: F401
    from crossmodel.train.template_cache import TemplateCache  # noqa: F401
    from crossmodel.train.templates import IDK_ANSWERS, IGNORE_INDEX  # noqa: F401


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'crossmodel.train' has no attribute {name!r}")
    return getattr(import_module(f"crossmodel.train.{_HOMES[name]}"), name)
