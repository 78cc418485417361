"""Scenes (views with ground truth) and the loaders that build them."""

from avggt_bench.data.scene import Scene

__all__ = ["Scene"]
