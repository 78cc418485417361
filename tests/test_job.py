"""The Hydra job end to end on vggt_small, its records, bad input and the report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from avggt_bench import report
from avggt_bench.paths import REPO_DIR, config_dir
from avggt_bench.run import run_job

MODEL = ["model=vggt_small", "model.preprocess.size=70", "timing.warmup=0", "timing.repeats=2"]
TINY = [*MODEL, "dataset.width=70", "dataset.height=56"]


def compose_job(tmp_path, *overrides, base=TINY):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                *base,
                f"paths.root={tmp_path}",
                f"record.dir={tmp_path}/records",
                *overrides,
            ],
        )


def cli(tmp_path, *args, multirun=False, base=TINY, timeout=300):
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR), "HF_HUB_OFFLINE": "1"}
    flags = ["-m"] if multirun else []
    return subprocess.run(
        [sys.executable, "-m", "avggt_bench.run", *flags, *base, f"paths.root={tmp_path}", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("*.json"))]


def test_one_job_writes_a_complete_record(tmp_path):
    rec = run_job(compose_job(tmp_path, "num_views=3"))
    assert rec.status == "ok", rec.message
    [saved] = records(tmp_path / "records")
    assert saved["run_id"] == rec.run_id and saved["status"] == "ok"
    assert saved["job"]["model"] == "vggt_small" and saved["job"]["num_views"] == 3
    assert saved["input"]["image_hw"] == [56, 70] and saved["input"]["tokens_per_frame"] == 5 + 20
    assert len(saved["timings"]["forward"]["times_s"]) == 2
    for stage in ("load_s", "model_build_s", "preprocess_s", "metrics_s"):
        assert saved["timings"][stage] >= 0
    assert saved["memory"]["peak_bytes"] > 0 and saved["memory"]["threads"] >= 1
    assert saved["cost"]["macs"] > 0 and saved["cost"]["flops"] == 2 * saved["cost"]["macs"]
    assert saved["model"]["weights"] == "random" and saved["model"]["routes"] == ["global"] * 24
    prov = saved["provenance"]
    assert prov["torch"] and prov["device_type"] == "cpu" and prov["seed"] == 0
    assert prov["precision"] == "fp32" and "git_sha" in prov
    assert len(saved["config_hash"]) == 64


@pytest.mark.slow  # fast suite: test_sweeps runs num_views=1,2 sweeps and reports on them
def test_multirun_over_views_and_report(tmp_path):
    out = cli(tmp_path, "num_views=1,2", f"record.dir={tmp_path}/records", multirun=True)
    assert out.returncode == 0, out.stderr[-2000:]
    recs = records(tmp_path / "records")
    assert sorted(r["job"]["num_views"] for r in recs) == [1, 2]
    assert all(r["status"] == "ok" for r in recs)
    assert report.main([str(tmp_path / "records")]) == 0
    md = (tmp_path / "records" / "summary.md").read_text()
    assert "vggt_small" in md and "forward median (s)" in md and "random" in md
    assert (tmp_path / "records" / "summary.csv").exists()


def write_folder(folder: Path, sizes, corrupt=None):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            folder / f"{i:03d}.png"
        )
    if corrupt is not None:
        (folder / corrupt).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return folder


@pytest.mark.parametrize(
    "case, expected",
    [
        ("corrupt", "cannot decode image"),
        ("mixed", "different sizes"),
        ("empty", "no .png/.jpg/.jpeg files"),
        ("bad_size", "not a positive multiple of patch_size=14"),
    ],
)
def test_bad_input_gives_an_error_record_and_a_failing_exit(tmp_path, case, expected):
    folder = tmp_path / "imgs"
    args = []
    if case == "corrupt":
        write_folder(folder, [(80, 60)] * 2, corrupt="002.png")
    elif case == "mixed":
        write_folder(folder, [(80, 60), (60, 80), (80, 60)])
    elif case == "empty":
        folder.mkdir()
    else:
        write_folder(folder, [(80, 60)] * 3)
        args = ["model.preprocess.size=100"]
    out = cli(
        tmp_path,
        "dataset=folder",
        f"dataset.path={folder}",
        "num_views=3",
        f"record.dir={tmp_path}/records",
        *args,
        base=MODEL,
    )
    assert out.returncode != 0
    [rec] = records(tmp_path / "records")
    assert rec["status"] == "error" and expected in rec["message"]
    assert rec["timings"] == {}  # nothing written as if it succeeded


def test_folder_dataset_runs_on_user_images(tmp_path):
    folder = write_folder(tmp_path / "imgs", [(80, 60)] * 5)
    rec = run_job(
        compose_job(tmp_path, "dataset=folder", f"dataset.path={folder}", "num_views=2", base=MODEL)
    )
    assert rec.status == "ok", rec.message
    assert rec.input["source_hw"] == [60, 80] and rec.input["image_hw"] == [56, 70]


def test_unknown_preset_fails_before_running(tmp_path):
    out = cli(tmp_path, "model=vggt_huge", f"record.dir={tmp_path}/records")
    assert out.returncode != 0
    assert "vggt_small" in out.stderr  # Hydra lists the available options
    assert not (tmp_path / "records").exists()


def test_experiment_presets_override_the_primary_config(tmp_path):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=bench_cpu"], return_hydra_config=True)
    assert cfg.timing.repeats == 2 and cfg.model.preprocess.size == 154
    assert cfg.dataset.width == 154 and cfg.precision == "fp32"
    assert cfg.hydra.sweeper.params.num_views == "8,16,32,64,128"
    assert cfg.hydra.sweeper.params.attention == "dense,avggt_9,avggt_4"
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cuda = compose("config", overrides=["experiment=bench_cuda"], return_hydra_config=True)
    assert cuda.model.name == "vggt" and cuda.precision == "bf16"
    assert "800" in cuda.hydra.sweeper.params.num_views


def test_bad_config_value_fails_fast_without_a_record(tmp_path):
    out = cli(tmp_path, "precision=bf17", f"record.dir={tmp_path}/records")
    assert out.returncode != 0
    assert "precision='bf17' is not valid; use auto, fp32, bf16, fp16" in out.stderr
    assert not (tmp_path / "records").exists()


def test_accelerated_job_records_fidelity_routes_and_sga_overhead(tmp_path):
    dense = run_job(compose_job(tmp_path, "num_views=3"))
    fast = run_job(compose_job(tmp_path, "num_views=3", "attention=avggt_4"))
    assert dense.status == fast.status == "ok", fast.message
    assert dense.model["is_dense"] and not fast.model["is_dense"]
    assert "fidelity" not in dense.metrics
    assert fast.metrics["fidelity_reference"] == "cache"  # written by the dense job
    assert 0 <= fast.metrics["fidelity"]["pose_auc@30"] <= 100
    layers = fast.model["route_layers"]
    assert [r["layers"] for r in layers] == ["0-8", "9-23"]
    assert layers[1]["kept"] < layers[1]["tokens"] and layers[1]["path"] == "sga"
    assert fast.timings["sga_layer"]["overhead_ratio"] > 0
    assert fast.cost["macs"] < dense.cost["macs"]
    assert fast.model["attention"]["t_early"] == 9  # resolved, no `auto` left
    # without a cached reference the job computes the dense parent itself
    again = run_job(compose_job(tmp_path / "other", "num_views=3", "attention=avggt_4"))
    assert again.metrics["fidelity_reference"] == "computed"
    assert again.metrics["fidelity"] == fast.metrics["fidelity"]


def test_pi3_job_with_api3_and_vggt_resolution(tmp_path):
    rec = run_job(
        compose_job(
            tmp_path,
            "model=pi3_small",
            "model.preprocess.mode=crop",
            "attention=api3_4",
            "num_views=3",
        )
    )
    assert rec.status == "ok", rec.message
    assert [r["layers"] for r in rec.model["route_layers"]] == ["0-9", "10-17"]
    assert rec.input["image_hw"] == [56, 70] and rec.input["tokens_per_frame"] == 25
    assert rec.metrics["fidelity"]["map_stride"] == 4 and rec.model["family"] == "pi3"


def test_resume_identity_covers_machine_threads_torch_and_package(tmp_path, monkeypatch):
    from avggt_bench import machine
    from avggt_bench.job.resume import job_id

    first = job_id(compose_job(tmp_path, "num_views=2"))
    assert job_id(compose_job(tmp_path, "num_views=2")).digest == first.digest  # stable
    assert first.identity["machine"]["machine"] == first.job["machine"]
    assert first.path.parent == tmp_path / "records"
    # thread count, torch/CUDA version, package version and CPU model each change the hash
    assert job_id(compose_job(tmp_path, "num_views=2", "threads=7")).digest != first.digest
    with monkeypatch.context() as m:
        m.setattr(machine, "torch_versions", lambda: {"torch": "9.9.9", "cuda": None})
        assert job_id(compose_job(tmp_path, "num_views=2")).digest != first.digest
    with monkeypatch.context() as m:
        m.setattr("avggt_bench.job.resume.package_version", lambda: "99.0")
        assert job_id(compose_job(tmp_path, "num_views=2")).digest != first.digest
    with monkeypatch.context() as m:
        m.setattr(machine, "cpu_model", lambda: "Other CPU 9000")
        other = job_id(compose_job(tmp_path, "num_views=2"))
        assert other.digest != first.digest and "other-cpu-9000" in other.job["machine"]
    # where the record goes and how it is logged are not part of the identity
    moved = job_id(compose_job(tmp_path, "num_views=2", f"record.dir={tmp_path}/elsewhere"))
    assert moved.digest == first.digest


def test_default_record_folder_is_per_machine_under_results_runs(tmp_path):
    from avggt_bench.machine import machine_slug

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.root={tmp_path}", "threads=3"])
    slug = machine_slug("auto", 3)
    assert cfg.record.dir == f"{tmp_path}/results/runs/{slug}/records"
    assert slug.endswith("-3t") or slug.startswith("cuda-")


def test_a_resume_hit_imports_neither_torch_nor_the_optional_libraries(tmp_path):
    # a finished record of the job is on disk: the check must not pay for `import torch`
    script = f"""
import json, sys
from hydra import compose, initialize_config_dir
from avggt_bench.paths import config_dir
from avggt_bench.job.resume import job_id
from avggt_bench.run import run_job
with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
    cfg = compose("config", overrides={[*TINY, "num_views=2", f"paths.root={tmp_path}"]!r})
jid = job_id(cfg)
jid.path.parent.mkdir(parents=True)
jid.path.write_text(json.dumps({{"run_id": jid.run_id, "config_hash": jid.digest, "job": {{}},
                                 "config": {{}}, "status": "ok"}}))
rec = run_job(cfg)
heavy = [m for m in ("torch", "open3d", "wandb", "evo", "matplotlib", "pandas") if m in sys.modules]
print(rec.status, heavy)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "ok []"


def test_a_mistyped_key_names_the_closest_valid_one(tmp_path):
    out = cli(tmp_path, "num_veiws=4", f"record.dir={tmp_path}/records")
    assert out.returncode == 2
    assert "unknown config key 'num_veiws'" in out.stderr
    assert "did you mean num_views?" in out.stderr and "+num_veiws=4" not in out.stderr
    nested = cli(tmp_path, "dataset.widht=4", f"record.dir={tmp_path}/records")
    assert nested.returncode == 2 and "did you mean dataset.width?" in nested.stderr
    assert not (tmp_path / "records").exists()


def test_a_folder_job_takes_every_image_and_logs_its_input_size(tmp_path, caplog):
    folder = tmp_path / "my_scene" / "images"
    folder.mkdir(parents=True)
    for i in range(5):
        Image.fromarray(np.full((56, 70, 3), 40 * i, np.uint8)).save(folder / f"{i:02d}.png")
    with caplog.at_level("INFO", logger="avggt_bench.job"):
        rec = run_job(compose_job(tmp_path, "dataset=folder", f"dataset.path={folder}", base=MODEL))
    assert rec.status == "ok", rec.message
    assert rec.input["num_views"] == 5 and rec.input["scene"].endswith("/my_scene")
    assert "-vall-" in rec.run_id
    assert "5 views, 56x70 source -> 56x70 input, 25 tokens per view, 125 in global" in caplog.text


def test_fidelity_false_runs_no_dense_parent(tmp_path):
    rec = run_job(compose_job(tmp_path, "num_views=2", "attention=avggt_9", "fidelity=false"))
    assert rec.status == "ok", rec.message
    assert "fidelity" not in rec.metrics
    assert rec.metrics["fidelity_reference"] == "off (fidelity=false)"


def test_model_from_config_passes_every_model_setting(tmp_path):
    """The job and the analysis build through `model_from_config`: each model key reaches
    `build_model` (pi3_small: its official SDPA policy is not PyTorch's default)."""
    from avggt_bench.attention.routes import is_dense
    from avggt_bench.models import MODELS, build_model, model_from_config

    overrides = ("model=pi3_small", "attention=api3_2", "model.sdpa_policy=default")
    model = model_from_config(compose_job(tmp_path, *overrides, base=[]))
    ref = build_model("pi3_small", attention="api3_2", sdpa_policy="default")
    assert model.preset.name == "pi3_small" and model.weights.random
    assert model.sdpa_policy == "default" != MODELS.build("pi3_small").sdpa_policy
    assert model.route_strings == ref.route_strings and not is_dense(model.routes)
    assert model.attention_config == ref.attention_config
