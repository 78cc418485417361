"""`make bench` / `make bench-full`: run the benchmark sweeps for this machine, then the report.

    python -m avggt_bench.bench              quick: dense vs AVGGT(9) vs FastVGGT over a range of
                                             views (vggt_small 154x112 on CPU; VGGT-1B on a GPU)
    python -m avggt_bench.bench --full       every sweep: VGGT dense vs AVGGT, π³ dense vs Aπ³, the
                                             sparse baselines, VGGT* memory, and metric timing
    python -m avggt_bench.bench --reference  write the repository's reference numbers
                                             (results/reference/<machine>/) instead of your own run
    python -m avggt_bench.bench --plan       print the plan and its estimated time, run nothing

Records go to `results/runs/<machine>/bench/records` (git-ignored); a second run resumes and
recomputes nothing. The plan (sweeps x jobs, estimated time from the cost model and this
machine's MAC rate) is printed first, then progress with an ETA. Extra `key=value` arguments go
to every sweep, e.g. `num_views=8,16`. Exits non-zero, after writing the report, when a job did
not finish (crashed or missing).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

from avggt_bench.bench_plan import Plan, PlannedJob, estimate, finished, make_plan
from avggt_bench.machine import device_type, machine_slug
from avggt_bench.paths import REPO_DIR

QUICK = {"cpu": ["bench_cpu_quick"], "cuda": ["bench_cuda_quick"]}
FULL = {
    kind: [f"bench_{kind}", f"bench_{kind}_pi3", f"bench_{kind}_baselines", f"bench_{kind}_memory"]
    for kind in ("cpu", "cuda")
}
NOT_FINISHED = ("crashed", "running")


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def out_dir(reference: bool, slug: str) -> Path:
    kind = "reference" if reference else "runs"
    return REPO_DIR / "results" / kind / slug / ("" if reference else "bench")


class Progress:
    """Polls the planned records and prints each finished job with an overall ETA (the plan's
    estimate corrected by how long the finished jobs actually took)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.start = time.perf_counter()
        self.seen = {id(j) for j in plan.jobs if j.done}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Progress:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.check()

    def _poll(self) -> None:
        while not self.stop.wait(3.0):
            self.check()

    def check(self) -> None:
        todo = [j for j in self.plan.jobs if id(j) not in self.seen]
        for job in todo:
            rec = finished(job)
            if rec is None:
                continue
            self.seen.add(id(job))
            elapsed = time.perf_counter() - self.start
            ran = [j for j in self.plan.jobs if id(j) in self.seen and not j.done]
            left = [j for j in self.plan.jobs if id(j) not in self.seen]
            planned = sum(j.estimate_s for j in ran)
            factor = elapsed / planned if planned > 0 else 1.0
            eta = factor * sum(j.estimate_s for j in left)
            say(
                f"{len(self.seen)}/{len(self.plan.jobs)} jobs done ({job.jid.run_id}: "
                f"{rec.get('status')}); elapsed {_minutes(elapsed)}, about {_minutes(eta)} left"
            )


def announce(plan: Plan, sweeps: list[str], slug: str) -> None:
    say(f"machine {slug}: {len(sweeps)} sweep(s), {len(plan.jobs)} jobs")
    for sweep in sweeps:
        jobs = plan.of(sweep)
        pending = [j for j in jobs if not j.done]
        cost = sum(j.estimate_s for j in pending)
        say(
            f"  {sweep}: {len(jobs)} jobs, {len(jobs) - len(pending)} already recorded, "
            f"about {_minutes(cost)} (min:s)"
        )
    if plan.rate_macs_per_s:
        say(
            f"estimate: {_minutes(plan.estimate_s)} in all, from the cost model at the measured "
            f"{plan.rate_macs_per_s / 1e9:.1f} GMAC/s and {plan.startup_s:.1f} s start-up per job"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="every sweep and metric timing")
    parser.add_argument("--reference", action="store_true", help="write results/reference/")
    parser.add_argument("--plan", action="store_true", help="print the plan, run nothing")
    parser.add_argument(
        "--no-estimate", action="store_true", help="skip the time estimate (builds the models)"
    )
    parser.add_argument("overrides", nargs="*", help="key=value passed to every sweep")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    kind = device_type("auto")
    slug = machine_slug("auto")
    sweeps = (FULL if args.full else QUICK)[kind]
    folder = out_dir(args.reference, slug)
    extra = list(args.overrides)
    given = [o.partition("=")[2] for o in extra if o.startswith("record.dir=")]
    if given:  # records elsewhere: the report goes beside them
        folder = Path(given[-1]).parent
    elif args.reference:
        extra.append(f"record.dir={folder / 'records'}")
    plan = make_plan(sweeps, extra)
    if not args.no_estimate:
        estimate(plan)
    announce(plan, sweeps, slug)
    if args.plan:
        return 0
    try:
        with Progress(plan):
            for number, sweep in enumerate(sweeps, 1):
                say(f"sweep {number}/{len(sweeps)}: experiment={sweep}")
                cmd = [sys.executable, "-m", "avggt_bench.run", f"experiment={sweep}", *extra]
                subprocess.run(cmd, cwd=REPO_DIR)
            if args.full:
                say("metric timing on an 800-view synthetic scene")
                timing = [sys.executable, "-m", "avggt_bench.metrics.time_metrics", "--views"]
                subprocess.run([*timing, "800", "--out", str(folder)], cwd=REPO_DIR)
    except KeyboardInterrupt:
        done = sum(finished(j) is not None for j in plan.jobs)
        say(
            f"interrupted: {done}/{len(plan.jobs)} jobs have records (kept; nothing finished is "
            f"lost). Run the same command again to resume."
        )
        return 130
    return report_and_check(plan, folder)


def report_and_check(plan: Plan, folder: Path) -> int:
    """Write the report, then list the jobs that did not finish (non-zero exit if any)."""
    from avggt_bench import report

    records = folder / "records"
    status = report.main([str(folder)]) if records.is_dir() else 1
    lost: list[tuple[PlannedJob, str]] = []
    failed: list[tuple[PlannedJob, str]] = []
    for job in plan.jobs:
        rec = finished(job)
        state = "missing (no record)" if rec is None else rec.get("status")
        if rec is None or state in NOT_FINISHED:
            lost.append((job, state))
        elif state in ("error", "oom"):
            failed.append((job, state))
    for job, state in failed:
        say(f"recorded failure: {job.jid.run_id}: {state}")
    if lost:
        say(f"{len(lost)} job(s) did not finish:")
        for job, state in lost:
            say(f"  {job.jid.run_id}: {state} ({' '.join(job.overrides)})")
        return 1
    say(f"report written under {folder}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
