"""crossmodel.models stage."""
