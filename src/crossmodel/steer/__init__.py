"""crossmodel.steer stage."""
