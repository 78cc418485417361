"""Layer-role analysis (avggt.md §11): attention capture, top-k pair classes, the 180° rotation
probe and the per-block profiler. `python -m avggt_bench.analyze` runs them from a Hydra config."""
