"""`make bench`: run the default sweep for this machine's device, then print the summary.

CUDA available -> `experiment=bench_cuda` (VGGT-1B, bf16, 518x392, up to 800 views);
otherwise `experiment=bench_cpu` (vggt_small at reduced resolution). Extra arguments are passed
to the Hydra job, e.g. `python -m avggt_bench.bench num_views=8,16`.
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
    experiment = "bench_cuda" if device.type == "cuda" else "bench_cpu"
    print(f"make bench: device {device_slug(device)} -> experiment={experiment}", flush=True)
    cmd = [sys.executable, "-m", "avggt_bench.run", f"experiment={experiment}", *extra]
    sweep = subprocess.run(cmd, cwd=REPO_DIR)
    out_dir = REPO_DIR / "results" / "bench" / device_slug(device)
    status = report.main([str(out_dir)]) if out_dir.exists() else 1
    return sweep.returncode or status


if __name__ == "__main__":
    raise SystemExit(main())
