"""crossmodel.steer stage: combination rules, the DeltaModel artefact, steered generation (docs/STEERING.md)."""

from crossmodel.steer.combine import COMBINE_RULES, combine, get_rule
from crossmodel.steer.delta import CONFIG_NAME, DeltaConfig, DeltaModel, low_rank_embeddings, vocab_fingerprint
from crossmodel.steer.generate import EXTENSION_PENALTY, DeltaSlot, combine_deltas, steered_tokens, token_picker
from crossmodel.steer.processor import CMCLogitsProcessor
from crossmodel.steer.steered import DeltaSpec, SteerConfig, Steered, delta_entries, steer, token_map_for
from crossmodel.steer.sync import FullReencodeFeed, ReencodeFeed, TokenFeed
from crossmodel.steer.transplant import transplant, transplant_weights

__all__ = ["CMCLogitsProcessor", "COMBINE_RULES", "CONFIG_NAME", "DeltaConfig", "DeltaModel", "DeltaSlot",
           "DeltaSpec", "EXTENSION_PENALTY", "FullReencodeFeed", "ReencodeFeed", "SteerConfig", "Steered", "TokenFeed",
           "combine", "combine_deltas", "delta_entries", "get_rule", "low_rank_embeddings", "steer", "steered_tokens",
           "token_map_for", "token_picker", "transplant", "transplant_weights", "vocab_fingerprint"]
