"""Metrics: pure functions on predictions and ground truth, in float64."""
