"""A DFDM-style face-swap benchmark generator: one swap pipeline, five generator networks."""
