"""Sweeps that survive: OOM as a result, skips after an OOM, resume, isolation, loggers, report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from avggt_bench import report
from avggt_bench.paths import REPO_DIR, config_dir
from avggt_bench.run import run_job

TINY = [
    "model=vggt_small",
    "dataset.width=70",
    "dataset.height=56",
    "model.preprocess.size=70",
    "timing.warmup=0",
    "timing.repeats=1",
]


def sweep(tmp_path: Path, *args: str, launcher: str = "subprocess") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR), "HF_HUB_OFFLINE": "1", "AVGGT_QUIET": "1"}
    cmd = [
        sys.executable,
        "-m",
        "avggt_bench.run",
        "-m",
        f"hydra/launcher={launcher}",
        *TINY,
        f"paths.root={tmp_path}",
        f"record.dir={tmp_path}/records",
        f"hydra.sweep.dir={tmp_path}/sweep",
        *args,
    ]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)


def by_views(folder: Path) -> dict[int, dict]:
    recs = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return {r["job"]["num_views"]: r for r in recs}


def test_oom_is_a_result_larger_views_are_skipped_each_job_its_own_process_and_resume(tmp_path):
    out = sweep(tmp_path, "num_views=1,2,3", "debug.simulate_oom_from_views=2")
    assert out.returncode == 0, out.stderr[-3000:]
    recs = by_views(tmp_path / "records")
    assert "each in its own process" in out.stderr + out.stdout
    pids = {recs[v]["provenance"]["pid"] for v in (1, 2)}  # the two jobs that ran a model
    assert len(pids) == 2 and os.getpid() not in pids  # two child processes, not this one
    assert all(recs[v]["provenance"]["machine"] == recs[v]["job"]["machine"] for v in (1, 2))
    load = recs[1]["provenance"]["load"]
    assert load["cores"] >= 1 and len(load["loadavg_before"]) == 3
    assert 0.0 <= load["other_cpu_share"] <= 1.0 and isinstance(load["busy"], bool)
    assert recs[1]["status"] == "ok"
    assert recs[2]["status"] == "oom" and recs[2]["stage"] == "forward"
    assert "simulated out of memory at 2 views" in recs[2]["message"]
    assert recs[3]["status"] == "skipped" and recs[3]["message"] == "skipped (oom at 2 views)"
    assert report.main([str(tmp_path / "records")]) == 0
    summary = (tmp_path / "records" / "summary.md").read_text()
    assert "oom" in summary and "skipped" in summary
    assert (tmp_path / "records" / "summary.tex").exists()
    assert list((tmp_path / "records" / "plots").glob("*.png"))

    stamp = {v: r["finished_at"] for v, r in recs.items()}
    again = sweep(tmp_path, "num_views=1,2,3", "debug.simulate_oom_from_views=2")
    assert again.returncode == 0
    assert "not recomputed" in again.stderr + again.stdout
    assert by_views(tmp_path / "records")[1]["finished_at"] == stamp[1]  # the ok job is kept
    # resume=false recomputes: the saved record (its finish time made old) is written again
    [path] = [
        p
        for p in (tmp_path / "records").glob("*.json")
        if json.loads(p.read_text())["job"]["num_views"] == 1
    ]
    path.write_text(path.read_text().replace(stamp[1], "2000-01-01T00:00:00+00:00"))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                *TINY,
                "num_views=1",
                "debug.simulate_oom_from_views=2",
                "resume=false",
                f"paths.root={tmp_path}",
                f"record.dir={tmp_path}/records",
            ],
        )
    assert run_job(cfg).status == "ok"
    assert json.loads(path.read_text())["finished_at"] != "2000-01-01T00:00:00+00:00"


def test_a_killed_job_leaves_a_crashed_record_and_bench_fails(tmp_path, monkeypatch, capsys):
    from avggt_bench import bench

    monkeypatch.setenv("PYTHONPATH", str(REPO_DIR))
    monkeypatch.setenv("AVGGT_QUIET", "1")
    records = tmp_path / "bench" / "records"
    code = bench.main(
        [
            "--no-estimate",
            *TINY,
            "num_views=1,2",
            "attention=dense",
            f"paths.root={tmp_path}",
            f"record.dir={records}",
            f"hydra.sweep.dir={tmp_path}/sweep",
            "debug.simulate_crash_from_views=2",
        ]
    )
    assert code != 0
    recs = by_views(records)
    assert recs[1]["status"] == "ok"
    crashed = recs[2]
    assert crashed["status"] == "crashed" and crashed["exit_code"] == -9
    assert "exit code -9" in crashed["message"] and crashed["stderr_tail"]
    assert "forward" in crashed["stderr_tail"][-1]  # the stage log says where the job died
    err = capsys.readouterr().err
    assert "1 job(s) did not finish" in err and crashed["run_id"] in err
    assert (records.parent / "summary.md").exists()  # the report is written all the same


@pytest.mark.slow  # the same two-job sweep runs through the subprocess launcher in the fast suite
def test_submitit_local_launcher_runs_a_two_job_sweep(tmp_path):
    out = sweep(tmp_path, "num_views=1,2", launcher="submitit_local")
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(by_views(tmp_path / "records")) == [1, 2]


def offline_wandb_job(tmp_path, monkeypatch, *overrides: str):
    """Run one job in-process with the wandb logger in offline mode, writing under tmp_path."""
    from hydra import compose, initialize_config_dir

    from avggt_bench.paths import config_dir
    from avggt_bench.run import run_job

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                *overrides,
                "logger=wandb",
                f"paths.root={tmp_path}",
                f"record.dir={tmp_path}/records",
            ],
        )
    return run_job(cfg)


def test_wandb_offline_run_holds_the_summary(tmp_path, monkeypatch):
    rec = offline_wandb_job(tmp_path, monkeypatch, *TINY, "num_views=2")
    assert rec.status == "ok"
    from wandb_log import summary as read_summary

    runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    summary = read_summary(runs[0])
    assert summary["status"] == "ok" and summary["num_views"] == 2
    assert summary["forward/median_s"] == pytest.approx(rec.timings["forward"]["median_s"])
    assert summary["cost/macs"] == rec.cost["macs"]


def test_wandb_offline_run_holds_the_per_scene_table(tmp_path, monkeypatch):
    rec = offline_wandb_job(
        tmp_path,
        monkeypatch,
        "model=ground_truth",
        "dataset=synthetic_sparse",
        "dataset.width=56",
        "dataset.height=42",
    )
    assert rec.status == "ok" and len(rec.scenes) == 3
    [table] = list((tmp_path / "wandb").glob("offline-run-*/files/media/table/per_scene*.json"))
    content = json.loads(table.read_text())
    rows = [dict(zip(content["columns"], row, strict=True)) for row in content["data"]]
    assert [r["scene_id"] for r in rows] == [s["scene_id"] for s in rec.scenes]
    assert all(r["status"] == "ok" for r in rows)
    assert rows[0]["forward.median_s"] == pytest.approx(rec.scenes[0]["forward"]["median_s"])


def test_bench_plan_lists_every_sweep_job_and_what_is_already_recorded(tmp_path):
    from avggt_bench.bench import FULL, QUICK
    from avggt_bench.bench.plan import make_plan, sweep_jobs

    quick = sweep_jobs(QUICK["cpu"][0], [])
    views = sorted({int(o.split("=")[1]) for j in quick for o in j if o.startswith("num_views=")})
    attention = {o.split("=")[1] for j in quick for o in j if o.startswith("attention=")}
    assert views == [12, 24, 36] and attention == {"dense", "avggt_9", "fastvggt"}
    assert len(quick) == 9
    # the command line wins over the experiment's own sweep, as in Hydra
    narrowed = sweep_jobs(QUICK["cpu"][0], ["num_views=8,16", "attention=dense"])
    assert len(narrowed) == 2 and all("attention=dense" in j for j in narrowed)
    assert len(FULL["cpu"]) == 4
    plan = make_plan(QUICK["cpu"], ["num_views=8,16", f"paths.root={tmp_path}"])
    assert len(plan.jobs) == 6 and not any(j.done for j in plan.jobs)
    first = plan.jobs[0].jid
    assert (
        first.path.parent
        == tmp_path / "results" / "runs" / first.job["machine"] / "bench" / "records"
    )
    first.path.parent.mkdir(parents=True)
    first.path.write_text(json.dumps({"config_hash": first.digest, "status": "ok"}))
    again = make_plan(QUICK["cpu"], ["num_views=8,16", f"paths.root={tmp_path}"])
    assert [j.done for j in again.jobs] == [True] + [False] * 5


def test_a_multirun_without_record_dir_resumes_from_the_machine_folder(tmp_path):
    # the README's multirun example, run twice with no extra flag: the second run computes nothing
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR), "HF_HUB_OFFLINE": "1", "AVGGT_QUIET": "1"}
    cmd = [sys.executable, "-m", "avggt_bench.run", "-m", *TINY, "num_views=1",
           "attention=dense,avggt_2", f"paths.root={tmp_path}"]  # fmt: skip
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    [folder] = (tmp_path / "results" / "runs").iterdir()
    made = {p.name: p.stat().st_mtime_ns for p in (folder / "records").glob("*.json")}
    assert len(made) == 2
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert again.stderr.count("record exists, not recomputed") == 2
    assert {p.name: p.stat().st_mtime_ns for p in (folder / "records").glob("*.json")} == made
