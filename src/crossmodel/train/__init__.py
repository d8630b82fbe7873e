"""crossmodel.train stage."""
