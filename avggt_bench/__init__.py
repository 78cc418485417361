"""avggt_bench: benchmark and evaluation harness for multi-view 3D reconstruction transformers."""

__version__ = "0.1.0"
