"""Baselines to compare the two-stage model with (classical threshold, single-stage nets)."""
