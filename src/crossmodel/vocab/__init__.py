"""crossmodel.vocab stage."""
