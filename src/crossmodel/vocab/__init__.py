"""crossmodel.vocab: read tokenizers and build the token maps that move delta logits into a user's vocabulary."""

from crossmodel.vocab.cross_family import build_normalized_map
from crossmodel.vocab.fetch import KNOWN_TOKENIZERS, fetch_tokenizer
from crossmodel.vocab.map_modes import MAPPERS
from crossmodel.vocab.one_to_many import build_one_to_many_map
from crossmodel.vocab.pmmined import build_cmc_map, pm_mined
from crossmodel.vocab.reference_io import export_reference, import_reference
from crossmodel.vocab.surface import token_bytes
from crossmodel.vocab.token_map import TokenMap
from crossmodel.vocab.vocabulary import Family, Vocabulary, fingerprint, load_vocabulary

__all__ = ["KNOWN_TOKENIZERS", "MAPPERS", "Family", "TokenMap", "Vocabulary", "build_cmc_map",
           "build_normalized_map", "build_one_to_many_map", "export_reference", "fetch_tokenizer", "fingerprint",
           "import_reference", "load_vocabulary", "pm_mined", "token_bytes"]
