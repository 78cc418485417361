"""The prepared GPU check: correctness on the device, then a budgeted timing sweep, into one folder.

    python scripts/gpu_check.py --out OUT [--budget-s 420] [--dry-run]

1. Correctness (scripts/gpu_correctness.py): VGGT-1B and π³ against the official test vectors in
   tests/data, SGA on every log-sum-exp backend of the device and the block-sparse kernels
   (FlexAttention on CUDA) against the float64 references.
2. Timing, most important rows first, each through the project's own job (`run_job`, so every row is
   a real record): VGGT-1B with RANDOM weights (the recipe of tests/data; timings only) in bf16
   autocast at 518x392 — dense, AVGGT(9), FastVGGT and block-sparse (bsa_s50) at 100 views, dense
   and AVGGT(9) at 300, all four at 32, the other two at 300, AVGGT(9) at 800, then π³ dense vs
   Aπ³(9) at 100 and 300. A row whose estimated time does not fit before the deadline is skipped,
   and the summary says so.
3. OUT gets at most six files (the device tool returns 8): summary.md, gpu_check.json,
   records.tar.gz, speedup.png (with matplotlib), report.txt (the project's report of the
   records) and, from scripts/gpu_check.sh, gpu_check.log. Every file is rewritten after every row.

`--dry-run` runs the same code on CPU with vggt_small / pi3_small, 2-5 views of 70x56 and
self-made test vectors in well under a minute (tests/test_gpu_check.py runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import gpu_correctness as checks  # noqa: E402
import gpu_summary as summary  # noqa: E402
import torch  # noqa: E402

VIEWS_REAL = {32: 32, 100: 100, 300: 300, 800: 800}
VIEWS_DRY = {32: 2, 100: 3, 300: 4, 800: 5}
VGGT_METHODS = ("dense", "avggt_9", "fastvggt", "bsa_s50")
# expected forward time relative to dense at the same views: only to decide what fits the budget
METHOD_FACTOR = {"dense": 1.0, "avggt_9": 0.5, "fastvggt": 0.7, "bsa_s50": 0.8, "api3_9": 0.5}


@dataclass
class Row:
    model: str
    attention: str
    views: int  # the nominal (real) view count
    n: int  # the views it runs: `views`, or a toy count in the dry run
    warmup: int
    repeats: int
    fidelity: bool = True  # False: no dense-parent reference (where the job config allows it)

    @property
    def family(self) -> str:
        return "pi3" if self.model.startswith("pi3") else "vggt"


def plan(dry: bool) -> list[Row]:
    """The timing rows, most important first."""
    vggt, pi3 = ("vggt_small", "pi3_small") if dry else ("vggt", "pi3")
    n = VIEWS_DRY if dry else VIEWS_REAL
    w, r = (0, 1) if dry else (1, 3)
    r_big = 1 if dry else 2
    rows = [Row(vggt, a, 100, n[100], w, r) for a in VGGT_METHODS]
    rows += [Row(vggt, a, 300, n[300], w, r_big) for a in ("dense", "avggt_9")]
    rows += [Row(vggt, a, 32, n[32], w, r) for a in VGGT_METHODS]
    rows += [Row(vggt, a, 300, n[300], w, r_big) for a in ("fastvggt", "bsa_s50")]
    # dense VGGT at 800 views is what AVGGT avoids: its fidelity reference would cost more than
    # the row itself, so the row turns fidelity off where the job has that switch
    rows.append(Row(vggt, "avggt_9", 800, n[800], w, 1, fidelity=False))
    rows += [
        Row(pi3, a, v, n[v], w, 1 if dry else 2) for v in (100, 300) for a in ("dense", "api3_9")
    ]
    return rows


class Budget:
    """Wall-clock deadline and a forward-time model fitted to what has run."""

    def __init__(self, seconds: float, dry: bool, device: torch.device) -> None:
        self.deadline = time.monotonic() + seconds
        self.dense_s: dict[tuple[str, int], float] = {}  # (family, views run) -> dense median
        self.build_s = 3.0 if dry else 15.0
        # dense forward before any measurement: VGGT-1B, 100 views, bf16 on an H100-class GPU
        self.prior = (VIEWS_DRY[100], 0.5) if dry else (100, 4.0)
        # FlexAttention compiles for every new shape (dynamic=False): ~1 min first, less after
        self.compile_s = 0.0 if device.type == "cpu" else 60.0
        self.can_skip_fidelity = False  # set when the job config has a `fidelity` switch

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def dense(self, family: str, views: int) -> float:
        if (family, views) in self.dense_s:
            return self.dense_s[(family, views)]
        known = [(v, t) for (f, v), t in self.dense_s.items() if f == family]
        v0, t0 = max(known) if known else self.prior
        ratio = views / v0
        return t0 * max(ratio, ratio**2)  # attention grows as views², the rest linearly

    def estimate(self, row: Row) -> float:
        t = self.dense(row.family, row.n) * METHOD_FACTOR.get(row.attention, 1.0)
        total = self.build_s + (row.warmup + row.repeats) * t * 1.1  # + layer micro-benchmark
        fidelity = row.fidelity or not self.can_skip_fidelity
        if fidelity and row.attention != "dense" and (row.family, row.n) not in self.dense_s:
            total += self.dense(row.family, row.n)  # fidelity runs the dense parent
        if row.attention.startswith("bsa"):
            total += self.compile_s
        return total

    def learn(self, row: Row, record: Any) -> None:
        build = (record.timings or {}).get("model_build_s")
        if build:
            self.build_s = max(self.build_s * 0.5, float(build) * 1.2)
        median = ((record.timings or {}).get("forward") or {}).get("median_s")
        if record.status == "ok" and median and row.attention == "dense":
            self.dense_s[(row.family, row.n)] = float(median)
        if row.attention.startswith("bsa"):
            self.compile_s *= 0.5


def overrides(
    row: Row, dry: bool, device: torch.device, work: Path, fidelity_switch: bool = False
) -> list[str]:
    width, height = (70, 56) if dry else (518, 392)
    # π³'s own loader resizes to a pixel budget; the timing compares both models at 518x392
    pre = ["model.preprocess.mode=crop"] if row.family == "pi3" else []
    return [
        *pre,
        f"model={row.model}",
        f"attention={row.attention}",
        "dataset=synthetic",
        f"dataset.width={width}",
        f"dataset.height={height}",
        f"model.preprocess.size={width}",
        f"num_views={row.n}",
        f"device={device.type}",
        # bf16 autocast is the GPU policy; the CPU dry run keeps fp32 (CPU bf16 is emulated and
        # ~5x slower here; tests/test_gpu_precision.py rehearses bf16 on CPU)
        f"precision={'fp32' if dry else 'bf16'}",
        f"timing.warmup={row.warmup}",
        f"timing.repeats={row.repeats}",
        f"paths.root={work}",
        f"record.dir={work / 'records'}",
        "record.tag=gpu_check",
        "resume=false",
        *(["fidelity=false"] if fidelity_switch and not row.fidelity else []),
    ]


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from avggt_bench.paths import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=overrides)


def has_fidelity_switch() -> bool:
    """Whether the job config has a top-level `fidelity` switch (the dense-parent reference)."""
    return "fidelity" in _compose([])


def run_row(row: Row, dry: bool, device: torch.device, work: Path, switch: bool) -> Any:
    from avggt_bench.run import run_job

    return run_job(_compose(overrides(row, dry, device, work, switch)))


def environment(device: torch.device, dry: bool) -> dict[str, Any]:
    env = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dry_run": dry,
        "precision": "fp32 (dry run on CPU)" if dry else "bf16 autocast",
        "budget": "rows whose estimate does not fit the deadline are skipped (see note)",
        "weights": "random (tests/data recipe): timings only, not the released checkpoints",
    }
    if device.type == "cuda":
        _free, total = torch.cuda.mem_get_info(device)
        env["gpu_memory_gb"] = round(total / 1e9, 1)
    return env


def correctness(device: torch.device, dry: bool, work: Path) -> list[dict[str, Any]]:
    rows = []
    data = ROOT / "tests" / "data"
    for family, file, scale in (
        ("vggt", "vggt_1b_2x140x182.pt", 0.03),
        ("pi3", "pi3_2x140x182.pt", 0.02),
    ):
        start = time.perf_counter()
        try:
            if dry:  # the same check on the small architecture and a self-made vector
                path = work / f"{family}_small_vector.pt"
                model = checks.make_vector(family, path, scale)
                row = checks.official_vector(family, path, scale, device, True, model)
                del model
            else:
                row = checks.official_vector(family, data / file, scale, device)
        except Exception as exc:
            row = {
                "check": f"official_vector[{family}]",
                "status": "error",
                "detail": repr(exc)[:300],
                "max_rel_err": None,
            }
        row["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(summary.check_line(row), flush=True)
    for row in checks.sga_backends(device):
        rows.append(row)
        print(summary.check_line(row), flush=True)
    for row in checks.block_sparse_kernels(device, compile_flex=device.type == "cuda"):
        rows.append(row)
        print(summary.check_line(row), flush=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="wall-clock budget (420; dry run 40)"
    )
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (records, cache)")
    args = parser.parse_args(argv)
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        print("no CUDA device: use --dry-run on a CPU machine", file=sys.stderr)
        return 2
    device = torch.device("cpu" if dry else "cuda")
    args.budget_s = args.budget_s or (40.0 if dry else 420.0)
    budget = Budget(args.budget_s, dry, device)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    os.environ.setdefault("AVGGT_CACHE", str(work / "cache"))
    (work / "records").mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {
        "environment": environment(device, dry),
        "correctness": [],
        "rows": [],
        "budget_s": args.budget_s,
    }
    print(json.dumps(state["environment"]), flush=True)
    state["correctness"] = correctness(device, dry, work)
    summary.write(args.out, state, work / "records")
    budget.can_skip_fidelity = has_fidelity_switch()
    for i, row in enumerate(plan(dry)):
        need, left = budget.estimate(row), budget.left() - 10.0
        label = f"{row.model} {row.attention} {row.views} views"
        if need > left and i > 0:  # the first row (dense VGGT at 100 views) always runs
            entry = {
                "row": label,
                "status": "skipped",
                "message": f"budget: needs ~{need:.0f} s, {max(left, 0):.0f} s left",
            }
        else:
            start = time.monotonic()
            record = run_row(row, dry, device, work, budget.can_skip_fidelity)
            budget.learn(row, record)
            entry = summary.row_entry(label, row, record, time.monotonic() - start)
        state["rows"].append(entry)
        print(summary.row_line(entry), flush=True)
        summary.write(args.out, state, work / "records")
    summary.write(args.out, state, work / "records", final=True)
    failed = [c for c in state["correctness"] if c["status"] in ("fail", "error")]
    print(f"done: {len(failed)} correctness failure(s), {budget.left():.0f} s of budget left")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
