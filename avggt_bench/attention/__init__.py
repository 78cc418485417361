"""Attention variants behind one seam: layouts, kernels, per-layer routes and methods."""

from avggt_bench.attention import avggt  # noqa: F401  (registers the AVGGT routes and method)
