"""The synthetic city: a deterministic, seeded generator of street drives with full ground truth."""
