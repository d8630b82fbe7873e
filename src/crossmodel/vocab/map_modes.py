"""The registry of mapping strategies: mode name -> `build_*_map(user, delta, user_rows, delta_rows, **options)`."""

from crossmodel.vocab.cross_family import build_normalized_map
from crossmodel.vocab.one_to_many import build_one_to_many_map
from crossmodel.vocab.pmmined import build_cmc_map

MAPPERS = {"cmc": build_cmc_map, "normalized": build_normalized_map, "one-to-many": build_one_to_many_map}
