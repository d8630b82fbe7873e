"""crossmodel.train stage: train a delta next to a frozen template (DESIGN.md §1) — data and chat templates,
a fictitious-facts generator, the six losses on the combined model, the chunked memory-safe loss, the
template-logit cache, and the resumable training loop."""

from crossmodel.train.chunked import Combined, combined_for_batch, loss_positions, output_head
from crossmodel.train.config import TrainConfig
from crossmodel.train.data import FORMATS, Batch, Encoded, Example, collate, encode_examples, load_examples, with_idk_answers
from crossmodel.train.facts import generate_facts, write_facts
from crossmodel.train.losses import LOSSES, NPO_BETA, get_loss
from crossmodel.train.loop import TrainResult, evaluate, train
from crossmodel.train.recipe import run_training
from crossmodel.train.template_cache import TemplateCache
from crossmodel.train.templates import IDK_ANSWERS, IGNORE_INDEX

__all__ = ["FORMATS", "IDK_ANSWERS", "IGNORE_INDEX", "LOSSES", "NPO_BETA", "Batch", "Combined",
           "Encoded", "Example", "TemplateCache", "TrainConfig", "TrainResult", "collate",
           "combined_for_batch", "encode_examples", "evaluate", "generate_facts", "get_loss", "load_examples",
           "loss_positions", "output_head", "run_training", "train", "with_idk_answers", "write_facts"]
