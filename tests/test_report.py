"""The report on synthetic records: rows are configurations, speedups pair only like with like,
odd numbers are flagged, failed jobs are listed, a run sits beside the reference."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from avggt_bench import report
from avggt_bench.paths import REPO_DIR
from avggt_bench.records import SCHEMA_VERSION
from avggt_bench.report import ingest
from avggt_bench.report.flags import SHARE_RANGE, SPREAD_LIMIT, add_flags
from avggt_bench.report.rows import flatten
from avggt_bench.report.speedups import add_reference
from avggt_bench.report.tables import summary_table

MACHINE = "cpu-test-cpu-2c-2t"


def record(
    attention: str = "dense",
    views: int | None = 16,
    times: tuple[float, ...] = (0.99, 1.0, 1.01),
    macs: float = 100e9,
    machine: str = MACHINE,
    sigma: int | None = None,
    status: str = "ok",
    load: dict | None = None,
    sha: str = "a" * 40,
    dirty: bool = False,
    finished: str = "2026-12-01T10:00:00+00:00",
    scenes: list[dict] | None = None,
    fidelity: float | None = None,
    model: str = "vggt_small",
) -> dict:
    """A record in the current layout (what the job writes)."""
    config = {
        "num_views": views,
        "seed": 0,
        "timing": {"warmup": 1, "repeats": len(times)},
        "record": {"dir": f"/somewhere/{machine}"},
        "model": {"name": model, "memory_lean": True},
        "attention": {"name": attention, **({"sigma": sigma} if sigma else {})},
        "dataset": {"name": "synthetic" if scenes is None else "synthetic_sparse"},
    }
    ident = json.dumps({"config": config, "machine": machine}, sort_keys=True)
    config_hash = hashlib.sha256(ident.encode()).hexdigest()
    median = sorted(times)[len(times) // 2]
    timings: dict = {}
    if scenes is None:
        timings["forward"] = {
            "times_s": list(times),
            "median_s": median,
            "min_s": min(times),
            "max_s": max(times),
            "spread_s": max(times) - min(times),
        }
    else:
        ok = [s for s in scenes if s["status"] == "ok"]
        timings["forward_total_s"] = sum(s["forward"]["median_s"] for s in ok)
    prov = {"machine": machine, "git_sha": sha, "git_dirty": dirty, "torch": "2.13.0"}
    if load is not None:
        prov["load"] = load
    overrides = [f"attention={attention}", f"num_views={views}"]
    if sigma:
        overrides.append(f"attention.sigma={sigma}")
    return {
        "run_id": f"{model}-{attention}-v{views}-{config_hash[:10]}",
        "config_hash": config_hash,
        "job": {
            "model": model,
            "attention": attention,
            "dataset": config["dataset"]["name"],
            "num_views": views,
            "precision": "fp32",
            "overrides": overrides,
        },
        "config": config,
        "status": status,
        "message": None if status == "ok" else f"{status}: something happened",
        "finished_at": finished,
        "model": {
            "family": "vggt",
            "weights": "random",
            "memory_lean": True,
            "is_dense": attention == "dense",
        },
        "input": {"image_hw": [112, 154], "tokens_per_frame": 93},
        "timings": timings,
        "memory": {"peak_gb": 1.5, "kind": "cpu_peak_rss"},
        "cost": {"macs": macs} if scenes is None else {},
        "metrics": {"fidelity": {"pose_auc@30": fidelity}} if fidelity is not None else {},
        "scenes": scenes or [],
        "provenance": prov,
        "schema_version": SCHEMA_VERSION,
    }


def scene(name: str, median: float | None, status: str = "ok") -> dict:
    row = {"scene_id": name, "status": status, "message": None if status == "ok" else "boom"}
    if median is not None:
        row["forward"] = {"median_s": median, "times_s": [median, median]}
    return row


def write(folder: Path, *records: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, rec in enumerate(records):
        (folder / f"{i:02d}-{rec['run_id']}.json").write_text(json.dumps(rec))
    return folder


def table(folder: Path, reference: Path | None = None) -> tuple[pd.DataFrame, list[dict]]:
    df, notes = report.load_table([folder], [reference] if reference else [])
    df = add_flags(add_reference(report.add_speedups(df)))
    return df, notes


def test_sigma_ablation_gives_one_row_per_sigma(tmp_path):
    recs = [record("dense", times=(2.0, 2.0, 2.0))]
    recs += [record("avggt", sigma=s, times=(1.0, 1.0, 1.0), macs=50e9) for s in (2, 4, 9)]
    df, notes = table(write(tmp_path / "r", *recs))
    fast = df[df["attention"] == "avggt"]
    assert len(fast) == 3 and not [n for n in notes if n["action"] == "superseded"]
    assert sorted(fast["variant"]) == [f"avggt [attention.sigma={s}]" for s in (2, 4, 9)]
    assert list(fast["speedup"]) == [2.0, 2.0, 2.0]
    pivot = report.speedup_table(df)
    assert {f"avggt [attention.sigma={s}]" for s in (2, 4, 9)} <= set(pivot.columns)


def test_only_the_same_configuration_measured_twice_is_superseded(tmp_path):
    old = record("avggt", sigma=4, times=(3.0,) * 3, finished="2026-12-01T09:00:00+00:00")
    new = record("avggt", sigma=4, times=(1.0,) * 3, finished="2026-12-01T11:00:00+00:00")
    other_commit = record("dense", sha="b" * 40)
    folder = write(tmp_path / "r", old, new, other_commit)
    df, notes = table(folder)
    assert len(df) == 2
    assert df.loc[df["attention"] == "avggt", "forward_median_s"].item() == 1.0
    superseded = [n for n in notes if n["action"] == "superseded"]
    assert len(superseded) == 1 and superseded[0]["path"].startswith(str(folder / "00-"))


def test_speedups_pair_only_records_of_the_same_machine_and_source(tmp_path):
    run = write(tmp_path / "run", record("avggt", sigma=9, times=(1.0,) * 3, macs=50e9))
    ref = write(
        tmp_path / "ref",
        record("dense", times=(2.0,) * 3),  # same machine, but the reference: never a parent
        record("dense", machine="cuda-other", times=(4.0,) * 3),
    )
    df, _ = table(run, ref)
    assert df.loc[df["source"] == "run", "speedup"].isna().all()
    both = write(tmp_path / "both", record("dense", machine="cuda-other"), record("avggt", sigma=9))
    df, _ = table(both)
    assert df.loc[df["attention"] == "avggt", "speedup"].isna().all()


def test_a_run_beside_the_reference_has_a_time_ratio(tmp_path):
    run = write(
        tmp_path / "run",
        record("dense", times=(3.0,) * 3),
        record("avggt", sigma=9, times=(1.5,) * 3, macs=50e9),
    )
    ref = write(
        tmp_path / "ref",
        record("dense", times=(2.0,) * 3, sha="c" * 40),
        record("avggt", sigma=9, times=(0.8,) * 3, macs=50e9, sha="c" * 40),
    )
    out = tmp_path / "out"
    assert report.main([str(run), "--reference", str(ref), "--out", str(out)]) == 0
    csv = pd.read_csv(out / "summary.csv")
    mine = csv[(csv["source"] == "run") & (csv["attention"] == "avggt")].iloc[0]
    assert mine["time_vs_reference"] == pytest.approx(1.5 / 0.8)
    assert mine["reference_speedup"] == pytest.approx(2.0 / 0.8)
    assert mine["speedup"] == pytest.approx(2.0)  # its own dense parent, not the reference's
    text = (out / "summary.md").read_text()
    compact = text.split("### Speedup")[0]
    assert len(re.findall(r"^\| reference +\|", compact, flags=re.M)) == 2
    assert "time / reference" in text and "1.88x" in text


def test_protocol_speedup_only_over_scenes_both_finished(tmp_path):
    dense = record("dense", views=None, scenes=[scene("a", 1.0), scene("b", 2.0), scene("c", 4.0)])
    fast = record(
        "avggt",
        sigma=9,
        views=None,
        status="partial",
        scenes=[scene("a", 0.5), scene("b", None, "error"), scene("c", 1.0)],
    )
    df, _ = table(write(tmp_path / "r", dense, fast))
    row = df[df["attention"] == "avggt"].iloc[0]
    assert row["speedup"] == pytest.approx((1.0 + 4.0) / (0.5 + 1.0))
    assert row["speedup_scenes"] == "2/3"
    assert row["forward_total_s"] == pytest.approx(1.5)
    assert pd.isna(row["predicted_speedup"])  # no MAC count for a scene set


def test_crashed_and_partial_jobs_are_listed_never_dropped(tmp_path):
    crashed = {
        "run_id": "vggt_small-dense-v64-x",
        "job": {"model": "vggt_small", "attention": "dense", "num_views": 64},
        "status": "crashed",
        "message": "process died with exit code -9 (signal 9); stderr tail:\nstep 3\nKilled",
        "exit_code": -9,
        "stderr_tail": ["step 3", "Killed", ""],
        "provenance": {"machine": MACHINE},
        "schema_version": SCHEMA_VERSION,
    }
    partial = record(
        "avggt",
        sigma=9,
        views=None,
        status="partial",
        scenes=[scene("a", 0.5), scene("b", None, "oom")],
    )
    folder = write(tmp_path / "r", record("dense"), crashed, partial)
    assert report.main([str(folder), "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "Jobs: 1 ok, 1 partial, 1 crashed." in text
    listing = text.split("### Jobs that did not finish ok")[1]
    assert "crashed" in listing and "(signal 9); stderr tail: ... Killed" in listing
    assert re.search(r"\|\s+crashed\s+\|\s+-9\s+\|", listing)  # with its exit code
    assert "partial" in listing and "1/2" in listing


def test_a_noisy_row_beyond_the_cost_model_is_flagged_with_its_cause(tmp_path):
    """50 % spread and a speedup at 167 % of the cost model's MAC ratio."""
    busy = {"cores": 2, "loadavg_before": [1.9, 1.5, 1.2], "other_cpu_share": 0.6, "busy": True}
    idle = {"cores": 2, "loadavg_before": [0.0, 0.0, 0.0], "other_cpu_share": 0.01, "busy": False}
    dense = record("dense", times=(0.99, 1.0, 1.01), load=idle)
    noisy = record("avggt", sigma=9, times=(0.4, 0.5, 0.65), macs=100e9 / 1.2, load=busy)
    clean = record("avggt", sigma=4, times=(0.83, 0.84, 0.85), macs=100e9 / 1.2, load=idle)
    folder = write(tmp_path / "r", dense, noisy, clean)
    df, _ = table(folder)
    row = df[df["variant"] == "avggt [attention.sigma=9]"].iloc[0]
    assert row["spread_share"] == pytest.approx(0.5) and row["spread_share"] > SPREAD_LIMIT
    assert row["speedup_efficiency"] == pytest.approx(2.0 / 1.2)
    assert row["speedup_efficiency"] > SHARE_RANGE[1]
    assert row["flags"] == "spread 50%, 167% of cost model"
    assert "busy machine (other processes used 60% of the cores)" in row["flag_cause"]
    assert df[df["variant"] == "avggt [attention.sigma=4]"]["flags"].item() == ""
    assert df[df["is_dense"] == True]["flags"].item() == ""  # noqa: E712
    report.main([str(folder), "--out", str(tmp_path / "out")])
    flagged = (tmp_path / "out" / "summary.md").read_text().split("### Flagged rows")[1]
    assert "167% of cost model" in flagged and "sigma=4" not in flagged


def test_mixed_commits_and_machine_load_are_marked(tmp_path):
    old = record("dense", sha="a" * 40)
    new = record("avggt", sigma=9, sha="b" * 40, dirty=True, macs=50e9)
    folder = write(tmp_path / "r", old, new)
    report.main([str(folder), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "**Mixed commits:** this table holds records of 2 commits (aaaaaaaa, bbbbbbbb)" in text
    assert "**Uncommitted code:** 1 record(s)" in text
    assert "Machine load unknown for 2 record(s)" in text and "**Busy machine" not in text
    one = write(tmp_path / "one", record("dense", load={"other_cpu_share": 0.5, "busy": True}))
    report.main([str(one), "--out", str(tmp_path / "out1")])
    text = (tmp_path / "out1" / "summary.md").read_text()
    assert "Mixed commits" not in text and "**Busy machine:** 1 record(s)" in text


def old_layout(attention: str, scenes: list[dict]) -> dict:
    """A protocol record of the first layout (no machine slug, no load, per-scene `forward_s`
    and the sum over scenes in `timings.forward.median_s`)."""
    rec = record(attention, sigma=9 if attention != "dense" else None)
    rec["provenance"] = {
        "git_sha": "d" * 40,
        "git_dirty": False,
        "device_type": "cpu",
        "cpu": "Intel(R) Xeon(R) Processor",
        "cpu_cores": 2,
        "torch_threads": 2,
        "device_name": "CPU (Intel(R) Xeon(R) Processor, 2 threads)",
    }
    rec["schema_version"] = 1
    rec["scenes"] = scenes
    total = sum(s["forward_s"] for s in scenes if s["status"] == "ok")
    rec["timings"] = {"forward": {"median_s": total, "per": "sum over evaluated scenes"}}
    return rec


def test_old_layout_records_are_read_with_their_machine_rebuilt(tmp_path):
    dense_scenes = [
        {"scene_id": "a", "status": "ok", "forward_s": 2.0},
        {"scene_id": "b", "status": "ok", "forward_s": 6.0},
    ]
    fast_scenes = [
        {"scene_id": "a", "status": "ok", "forward_s": 1.0},
        {"scene_id": "b", "status": "error", "message": "boom"},
    ]
    folder = write(
        tmp_path / "old", old_layout("dense", dense_scenes), old_layout("avggt", fast_scenes)
    )
    df, notes = table(folder)
    assert not [n for n in notes if n["action"] == "ignored"]
    assert set(df["machine"]) == {"cpu-intel-xeon-processor-2c-2t"}
    assert df["load_busy"].isna().all() and (df["flags"] == "").all()
    fast = df[df["attention"] == "avggt"].iloc[0]
    assert fast["speedup"] == pytest.approx(2.0) and fast["speedup_scenes"] == "1/2"


def test_committed_records_stay_readable():
    folders = [REPO_DIR / "results" / "bench" / "cpu" / "records"]
    folders += sorted((REPO_DIR / "results" / "reference").glob("*/records"))
    folders = [f for f in folders if f.is_dir()]
    if not folders:
        pytest.skip("no committed records in this checkout")
    df, notes = report.load_table(folders)
    assert not [n for n in notes if n["action"] == "ignored"], notes
    assert df["machine"].notna().all() and df["variant"].notna().all()
    assert report.add_speedups(df)["speedup"].notna().any()


def test_report_says_what_it_did_with_odd_records(tmp_path):
    """Moved here from test_sweeps.py; now on synthetic records."""
    good = record("dense")
    folder = tmp_path / "mixed"
    write(folder, good, record("dense", machine="cuda-nvidia-x"))
    (folder / "old.json").write_text(json.dumps({**good, "schema_version": 0}))
    (folder / "new.json").write_text(json.dumps({**good, "schema_version": SCHEMA_VERSION + 1}))
    (folder / "half.json").write_text(json.dumps(good)[:200])
    (folder / "notes.json").write_text(json.dumps({"hello": 1}))
    df, notes = report.load_table([folder])
    assert len(df) == 2
    reasons = {Path(n["path"]).name: (n["action"], n["reason"]) for n in notes}
    assert reasons["half.json"][0] == "ignored" and "half-written" in reasons["half.json"][1]
    assert reasons["old.json"] == ("ignored", "schema version 0 (older, no converter)")
    assert reasons["new.json"][1].endswith("(newer, no converter)")
    assert reasons["notes.json"] == ("ignored", "not a job record")
    assert any(n["action"] == "separated" for n in notes)
    paths = report.write_report(df, notes, tmp_path / "out")
    text = paths["markdown"].read_text()
    assert f"## {MACHINE}" in text and "## cuda-nvidia-x" in text
    assert "Records not used as they are" in text


def test_a_wrong_published_mapping_stops_with_the_row_named():
    from avggt_bench.errors import ConfigError
    from avggt_bench.report.published import _cost_model_speedup

    assert _cost_model_speedup("vggt", "avggt_9", 800) == pytest.approx(9.2, rel=0.01)
    with pytest.raises(ConfigError, match=r"published row .*no_such_preset.*published_variants"):
        _cost_model_speedup("vggt", "no_such_preset", 800)


def test_importing_the_report_leaves_matplotlib_unloaded():
    code = "import sys, avggt_bench.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_DIR)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_schema_1_route_columns_are_converted_in_one_place():
    """Committed schema-1 records keep their method-specific columns under the routes' labels."""
    folders = sorted((REPO_DIR / "results" / "reference").glob("*/records"))
    paths = [p for f in folders for p in sorted(f.glob("*.json"))]
    old = [(p, json.loads(p.read_text())) for p in paths]
    old = [(p, r) for p, r in old if r.get("schema_version") == 1]
    sga = [(p, r) for p, r in old if "sga_layer" in (r.get("timings") or {})]
    sparse = [(p, r) for p, r in old if "block_sparse_layer" in (r.get("timings") or {})]
    if not (sga and sparse):
        pytest.skip("no committed schema-1 records with layer microbenchmarks")
    df, notes = report.load_table([sga[0][0].parent])
    assert {n["reason"] for n in notes if n["action"] == "converted"} == {"schema 1 -> 2"}
    for path, rec in (sga[0], sparse[0]):
        row = flatten(ingest.upgrade_v1(rec))
        if path == sga[0][0]:
            assert row["route: SGA layer / kernel"] == rec["timings"]["sga_layer"]["overhead_ratio"]
        else:
            bench = rec["timings"]["block_sparse_layer"]
            ratio = bench["dense_same_kernel_s"] / bench["dense_sdpa_s"]
            assert row["route: gather kernel dense / SDPA"] == pytest.approx(ratio)
            layers = rec["model"]["route_layers"]
            assert row["route: block sparsity"] == pytest.approx(layers[0]["sparsity"])
    assert "SGA layer / kernel" in summary_table(df).columns
