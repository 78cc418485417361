"""Layer-role analysis (the study of the AVGGT paper, arXiv 2512.02541): attention capture, top-k
pair classes, the 180° rotation probe and the per-block profiler. `python -m avggt_bench.analyze`
runs them from a Hydra config."""
