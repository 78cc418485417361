"""Timing, memory measurement and atomic records."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from avggt_bench.records import Record, config_hash, write_record
from avggt_bench.timing import MemoryMeter, TimingStats, time_repeats


def test_timing_stats_median_and_spread():
    s = TimingStats([3.0, 1.0, 2.0], warmup=1)
    assert s.median_s == 2.0 and s.min_s == 1.0 and s.max_s == 3.0 and s.spread_s == 2.0
    assert s.as_dict()["times_s"] == [3.0, 1.0, 2.0]


def test_time_repeats_counts_calls_and_measures_memory():
    calls = []

    def fn():
        calls.append(1)
        return torch.ones(8_000_000)  # 32 MB

    out, stats, mem = time_repeats(fn, torch.device("cpu"), warmup=2, repeats=3)
    assert len(calls) == 5 and len(stats.times_s) == 3 and out.numel() == 8_000_000
    assert mem.kind.startswith("cpu_peak_rss") and mem.peak_bytes >= mem.baseline_bytes
    with pytest.raises(ValueError):
        time_repeats(fn, torch.device("cpu"), repeats=0)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_cpu_peak_memory_is_reset_per_region():
    big = torch.ones(50_000_000)  # 200 MB, freed before the measured region
    del big
    with MemoryMeter(torch.device("cpu")) as m:
        small = torch.ones(2_000_000)
    assert m.stats.kind == "cpu_peak_rss"
    assert m.stats.peak_bytes - m.stats.baseline_bytes < 150e6
    del small


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux /proc")
def test_load_meter_sees_another_process_using_the_cpu():
    from avggt_bench.records.machine import LoadMeter

    meter = LoadMeter()
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with meter.measure():
            time.sleep(1.5)  # this process idles; the other one burns a core
    finally:
        spin.kill()
        spin.wait()
    load = meter.as_dict()
    assert load["cores"] >= 1 and len(load["loadavg_before"]) == 3
    # one busy core of `cores`: at least a good part of 1/cores (the spinner may share its core)
    assert load["other_cpu_share"] >= 0.3 / load["cores"]


def test_config_hash_is_order_independent():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_record_write_is_atomic(tmp_path):
    rec = Record(run_id="x", config_hash="h", job={}, config={}, status="ok")
    path = write_record(rec, tmp_path / "x.json")
    assert json.loads(path.read_text())["status"] == "ok"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
    assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: shared clusters read it


def test_a_killed_writer_leaves_no_complete_looking_record(tmp_path):
    # the child writes a large record and is killed mid-write: no x.json may exist afterwards
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        import avggt_bench.records as r
        real = os.replace
        def killed(src, dst):
            os.kill(os.getpid(), signal.SIGKILL)
        r.os.replace = killed
        big = {{"big": "x" * 10_000_000}}
        rec = r.Record(run_id="x", config_hash="h", job={{}}, config=big, status="ok")
        r.write_record(rec, Path({str(tmp_path)!r}) / "x.json")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "x.json").exists()
    assert all(p.name.startswith(".") for p in tmp_path.iterdir())  # only a hidden temp file


def test_git_state_ignores_results_but_not_code(tmp_path):
    """A sweep writing reference records under results/ must not mark its own code dirty."""
    from avggt_bench.records import git_state

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "summary.md").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_state(tmp_path)["git_dirty"] is False
    (tmp_path / "results" / "summary.md").write_text("b\n")
    assert git_state(tmp_path)["git_dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path)["git_dirty"] is True
