"""crossmodel.eval stage."""
