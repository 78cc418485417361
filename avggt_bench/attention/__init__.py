"""Attention variants behind one seam: layouts, kernels, per-layer routes and methods."""

from avggt_bench.attention.methods import avggt, block_sparse, fastvggt  # noqa: F401  (registrations)
