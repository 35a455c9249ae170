"""Evaluation: metrics, Bjontegaard deltas, sequence registries and anchors."""
