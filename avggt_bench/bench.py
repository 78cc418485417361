"""`make bench`: run the default sweep for this machine's device, then print the summary.

CUDA available -> the `bench_cuda*` experiments (VGGT-1B and π³, bf16, 518x392, up to 800 views);
otherwise `bench_cpu*` (vggt_small and pi3_small at 154x112). In order: VGGT dense vs AVGGT, π³
dense vs Aπ³, the sparse baselines, and VGGT* memory vs storing every layer; then the time of
each metric on an 800-view synthetic scene (metrics_timing.md). Each is a Hydra
multirun over views and attention variants. Extra arguments are passed to every sweep,
e.g. `python -m avggt_bench.bench num_views=8,16`.
"""

from __future__ import annotations

import subprocess
import sys

import torch

from avggt_bench import report
from avggt_bench.paths import REPO_DIR
from avggt_bench.records import device_slug


def main(argv: list[str] | None = None) -> int:
    extra = list(sys.argv[1:] if argv is None else argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base = "bench_cuda" if device.type == "cuda" else "bench_cpu"
    failed = 0
    for experiment in (base, f"{base}_pi3", f"{base}_baselines", f"{base}_memory"):
        print(f"make bench: device {device_slug(device)} -> experiment={experiment}", flush=True)
        cmd = [sys.executable, "-m", "avggt_bench.run", f"experiment={experiment}", *extra]
        failed |= subprocess.run(cmd, cwd=REPO_DIR).returncode
    out_dir = REPO_DIR / "results" / "bench" / device_slug(device)
    timing = [sys.executable, "-m", "avggt_bench.metrics.timing", "--views", "800"]
    print("make bench: metric timing on an 800-view synthetic scene", flush=True)
    failed |= subprocess.run([*timing, "--out", str(out_dir)], cwd=REPO_DIR).returncode
    status = report.main([str(out_dir)]) if out_dir.exists() else 1  # tables, plots, comparison
    return failed or status


if __name__ == "__main__":
    raise SystemExit(main())
