"""Attention variants behind one seam: layouts, kernels, per-layer routes."""
