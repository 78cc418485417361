"""The prepared GPU check (scripts/gpu_check.sh) in its CPU dry run, and its budget and summary
logic: what the device run will do, rehearsed where no GPU is lent."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from avggt_bench.paths import REPO_DIR

SCRIPTS = REPO_DIR / "scripts"


def load(name: str):
    sys.path.insert(0, str(SCRIPTS))
    try:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses resolve their annotations through it
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(SCRIPTS))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(SCRIPTS / "gpu_check.sh"), "--dry-run", "--budget-s", "8", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    return proc, out


def test_dry_run_writes_what_the_device_tool_brings_back(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert all((out / f).is_file() for f in files)  # no folders: the tool returns 2 levels
    assert len(files) <= 8 and {"summary.md", "gpu_check.json", "records.tar.gz"} <= set(files)
    assert "gpu_check.log" in files and "[check]" in (out / "gpu_check.log").read_text()


def test_dry_run_checks_pass_and_rows_are_real_records_or_budget_skips(dry_run):
    _, out = dry_run
    state = json.loads((out / "gpu_check.json").read_text())
    checks = {c["check"]: c["status"] for c in state["correctness"]}
    assert set(checks.values()) == {"ok"}, checks
    assert {"sga[cpu_flash,float32]", "sga[math,float32]", "block_sparse[gather,cpu]"} <= set(
        checks
    )
    rows = state["rows"]
    assert rows[0]["row"].startswith("vggt_small dense") and rows[0]["status"] == "ok"
    assert all(r["status"] == "ok" or "budget" in r["message"] for r in rows)
    ok = [r for r in rows if r["status"] == "ok"]
    with tarfile.open(out / "records.tar.gz") as tar:
        names = tar.getnames()
        for r in ok:
            member = f"records/{r['run_id']}.json"
            assert member in names
            record = json.load(tar.extractfile(member))
            assert record["status"] == "ok" and record["job"]["num_views"] == r["actual_views"]
            assert record["model"]["weights"] == "random" or "random" in json.dumps(record["model"])
    summary = (out / "summary.md").read_text()
    assert "## Speedup over dense" in summary and "random" in summary


def test_budget_skips_what_does_not_fit_and_learns_from_measurements():
    gpu_check = load("gpu_check")
    budget = gpu_check.Budget(100.0, dry=False, device=torch.device("cuda"))
    plan = gpu_check.plan(dry=False)
    assert [(r.attention, r.views) for r in plan[:4]] == [
        (a, 100) for a in gpu_check.VGGT_METHODS
    ]  # most important first
    rows = {(r.attention, r.views): r for r in plan if r.model == "vggt"}
    dense300, avggt800 = rows[("dense", 300)], rows[("avggt_9", 800)]
    assert budget.dense("vggt", 300) == pytest.approx(9 * budget.dense("vggt", 100))  # views²
    assert budget.dense("vggt", 32) == pytest.approx(0.32 * budget.dense("vggt", 100))  # linear
    # a non-dense row whose dense parent has not run pays for the fidelity reference
    fidelity = budget.estimate(rows[("avggt_9", 300)]) - budget.build_s

    class Rec:
        status, timings = "ok", {"model_build_s": 5.0, "forward": {"median_s": 20.0}}

    budget.learn(dense300, Rec())
    assert budget.dense("vggt", 300) == 20.0 and budget.build_s == pytest.approx(7.5)
    assert budget.estimate(rows[("avggt_9", 300)]) - budget.build_s < fidelity
    assert budget.dense("vggt", 800) == pytest.approx(20.0 * (800 / 300) ** 2)
    assert budget.estimate(avggt800) > budget.left()  # would be skipped with 100 s
    # AVGGT at 800 views drops the dense-parent reference where the job has the switch
    with_parent = budget.estimate(avggt800)
    budget.can_skip_fidelity = True
    assert with_parent - budget.estimate(avggt800) == pytest.approx(budget.dense("vggt", 800))


def test_rows_pass_the_record_folder_and_precision_explicitly():
    gpu_check = load("gpu_check")
    cuda, work = torch.device("cuda"), Path("/w")
    row = next(r for r in gpu_check.plan(dry=False) if r.views == 800)
    args = gpu_check.overrides(row, False, cuda, work, fidelity_switch=True)
    assert {"record.dir=/w/records", "precision=bf16", "num_views=800", "fidelity=false"} <= set(
        args
    )
    assert "fidelity=false" not in gpu_check.overrides(row, False, cuda, work)
    assert not any(a.startswith("experiment=") for a in args)
    dry = gpu_check.plan(dry=True)[0]
    assert "precision=fp32" in gpu_check.overrides(dry, True, torch.device("cpu"), work)


def test_speedup_table_puts_the_cost_model_beside_the_measurement():
    summary = load("gpu_summary")
    base = {"status": "ok", "family": "vggt", "views": 100}
    rows = [
        {**base, "attention": "dense", "median_s": 4.0, "macs": 900},
        {**base, "attention": "avggt_9", "median_s": 1.0, "macs": 300},
        {**base, "attention": "fastvggt", "status": "oom", "median_s": None, "macs": None},
        {**base, "attention": "bsa_s50", "views": 32, "median_s": 1.0, "macs": 1},  # no dense
    ]
    (row,) = summary.speedups(rows)
    assert row["attention"] == "avggt_9" and row["speedup"] == 4.0 and row["predicted"] == 3.0
