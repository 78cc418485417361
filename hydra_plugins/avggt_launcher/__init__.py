"""Hydra launcher plugin of avggt_bench: every sweep job in its own process."""
