"""Saved predictions and re-scoring: a save -> re-score round trip gives the job's own metrics
bit for bit (pose, trajectory, point-map and depth presets, and the fidelity to the dense parent),
a killed save leaves nothing that looks complete, the budget and the frame check say what they
did, and float16 maps re-score close but not marked exact."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from test_job_protocol import compose_job

from avggt_bench.errors import DataError
from avggt_bench.models.predictions import Predictions
from avggt_bench.records.saved_predictions import (
    load_scene,
    predictions_dir,
    save_scene,
    saved_scenes,
    scene_file,
)
from avggt_bench.rescore import main as rescore_main
from avggt_bench.rescore import rescore_folder
from avggt_bench.run import run_job

TINY = [
    "model=vggt_small",
    "model.preprocess.size=42",
    "dataset.width=56",
    "dataset.height=42",
    "timing.warmup=0",
    "timing.repeats=1",
]
SAVE32 = ["predictions.save=true", "predictions.dtype=float32"]
SPARSE = ["dataset=synthetic_sparse", "dataset.frames=4"]
# the ground-truth oracle with noise: no model to build, metrics that are not trivial
ORACLE = [
    "model=ground_truth",
    "model.rotation_noise_deg=7",
    "dataset.width=56",
    "dataset.height=42",
]


def _records(tmp_path) -> dict[str, dict]:
    return {
        p.name: json.loads(p.read_text()) for p in sorted((tmp_path / "records").glob("*.json"))
    }


def _rescored(tmp_path, name: str) -> dict:
    return json.loads((tmp_path / "rescored" / name).read_text())


@pytest.mark.parametrize(
    ("preset", "extra"),
    [
        ("synthetic_sparse", ["dataset.frames=4"]),
        ("synthetic_trajectory", ["dataset.frames=6"]),
        ("synthetic_mv_recon", ["dataset.frames=3"]),
        ("synthetic_video_depth", ["dataset.frames=3"]),
    ],
)
def test_rescore_reproduces_the_jobs_metrics_bit_for_bit(tmp_path, preset, extra):
    rec = run_job(compose_job(tmp_path, *TINY, *SAVE32, f"dataset={preset}", *extra))
    assert rec.status == "ok", rec.message
    [(name, original)] = _records(tmp_path).items()
    outcomes = rescore_folder(tmp_path / "records")
    assert [o.message for o in outcomes] == [""]
    assert outcomes[0].exact and outcomes[0].changed == {}
    new = _rescored(tmp_path, name)
    acc, again = original["metrics"]["accuracy"], new["metrics"]["accuracy"]
    assert again["metrics"] and again["metrics"] == acc["metrics"]  # == on floats: bit for bit
    assert again["n_ok"] == acc["n_ok"] == len(original["scenes"])
    for before, after in zip(original["scenes"], new["scenes"]):
        assert after["metrics"] == before["metrics"]
        assert after["groups"].keys() == before["groups"].keys()
    assert new["rescored"]["from"].endswith(name)
    assert new["rescored"]["metrics_code"] == original["provenance"]["metrics_code"]
    assert new["rescored"]["exact_inputs"] is True
    assert new["timings"] == original["timings"]  # a re-score measures no time


def test_rescore_of_an_accelerated_job_recomputes_its_fidelity_from_the_dense_set(tmp_path):
    for attention in ("dense", "avggt_9"):
        args = (*TINY, *SAVE32, *SPARSE, "+dataset.max_scenes=2", f"attention={attention}")
        assert run_job(compose_job(tmp_path, *args)).status == "ok"
    originals = _records(tmp_path)
    [(name, fast)] = [(n, r) for n, r in originals.items() if "avggt_9" in n]
    outcomes = {o.source.name: o for o in rescore_folder(tmp_path / "records")}
    assert outcomes[name].fidelity_parent is not None
    assert "dense" in outcomes[name].fidelity_parent
    new = _rescored(tmp_path, name)
    was = fast["metrics"]["fidelity_protocol"]["metrics"]
    assert was and new["metrics"]["fidelity_protocol"]["metrics"] == was
    for before, after in zip(fast["scenes"], new["scenes"]):
        assert after["fidelity_to_dense"] == before["fidelity_to_dense"]
        assert after["fidelity"] == before["fidelity"]


def test_changed_metric_code_shows_in_the_summary(tmp_path, monkeypatch):
    rec = run_job(compose_job(tmp_path, *ORACLE, *SAVE32, *SPARSE))
    assert rec.status == "ok"
    import avggt_bench.metrics.aggregate as agg

    real = agg.aggregate

    def shifted(*args, **kwargs):  # a "fixed" metric: every AUC one point higher
        out = real(*args, **kwargs)
        out["metrics"] = {k: v + 1 if k.startswith("auc") else v for k, v in out["metrics"].items()}
        return out

    monkeypatch.setattr("avggt_bench.metrics.evaluate.aggregate", shifted)
    [outcome] = rescore_folder(tmp_path / "records")
    assert outcome.changed and all(k.startswith("auc") for k in outcome.changed)
    old, new = outcome.changed["auc@30"]
    assert new == old + 1


def test_float16_maps_rescore_close_and_say_they_are_not_exact(tmp_path):
    args = (*TINY, "predictions.save=true", "dataset=synthetic_video_depth", "dataset.frames=3")
    assert run_job(compose_job(tmp_path, *args)).status == "ok"
    [(name, original)] = _records(tmp_path).items()
    [outcome] = rescore_folder(tmp_path / "records")
    assert not outcome.exact
    new = _rescored(tmp_path, name)
    assert new["rescored"]["exact_inputs"] is False
    for key, value in original["metrics"]["accuracy"]["metrics"].items():
        assert new["metrics"]["accuracy"]["metrics"][key] == pytest.approx(value, rel=1e-2)


def test_budget_stops_saving_and_the_rescore_names_the_missing_scenes(tmp_path):
    args = (*ORACLE, *SAVE32, *SPARSE, "predictions.budget_mb=0.001")
    assert run_job(compose_job(tmp_path, *args)).status == "ok"
    [(name, original)] = _records(tmp_path).items()
    rows = original["scenes"]
    assert rows[0]["predictions"]["saved"] is True and rows[0]["predictions"]["bytes"] > 1000
    assert all(r["predictions"]["saved"] is False for r in rows[1:])
    assert "budget" in rows[1]["predictions"]["reason"]
    [outcome] = rescore_folder(tmp_path / "records")
    assert outcome.scenes == 1 and outcome.missing == [r["scene_id"] for r in rows[1:]]
    new = _rescored(tmp_path, name)
    assert new["status"] == "partial" and "no saved predictions" in new["message"]


def test_save_true_reruns_a_job_whose_record_kept_no_predictions(tmp_path):
    args = (*ORACLE, *SPARSE)
    assert run_job(compose_job(tmp_path, *args)).status == "ok"
    [path] = (tmp_path / "records").glob("*.json")
    assert not predictions_dir(path).exists()
    assert run_job(compose_job(tmp_path, *args, "predictions.save=true")).status == "ok"
    assert len(saved_scenes(path)) == 3
    assert load_scene(saved_scenes(path)["seed0-orbit"]).images is None  # the oracle has none
    assert len(list((tmp_path / "records").glob("*.json"))) == 1  # same configuration, one record


def test_rescore_refuses_frames_that_changed_since_the_run(tmp_path):
    assert run_job(compose_job(tmp_path, *ORACLE, *SAVE32, *SPARSE)).status == "ok"
    [path] = (tmp_path / "records").glob("*.json")
    first = saved_scenes(path)[next(iter(saved_scenes(path)))]
    saved = load_scene(first)
    meta = {**saved.meta, "frame_ids": list(reversed(saved.meta["frame_ids"]))}
    save_scene(first, saved.predictions, meta, saved.images, "float32")
    [outcome] = rescore_folder(tmp_path / "records")
    assert outcome.out is None and "changed since the run" in outcome.message
    assert rescore_main([str(tmp_path / "records")]) == 1  # reported, not raised


def test_rescore_without_saved_predictions_says_how_to_get_them(tmp_path, capsys):
    assert run_job(compose_job(tmp_path, *ORACLE, *SPARSE)).status == "ok"
    assert rescore_main([str(tmp_path / "records")]) == 2
    assert "predictions.save=true" in capsys.readouterr().err


# ---------------------------------------------------------------------------- the file itself


def _predictions(dtype=torch.float32, seed=0) -> Predictions:
    g = torch.Generator().manual_seed(seed)
    s, h, w = 2, 3, 4
    return Predictions(
        extrinsics=torch.randn(1, s, 3, 4, generator=g, dtype=torch.float64),
        intrinsics=torch.randn(1, s, 3, 3, generator=g, dtype=torch.float64),
        depth=torch.rand(1, s, h, w, 1, generator=g).to(dtype),
        depth_conf=(1 + torch.rand(1, s, h, w, generator=g)).to(dtype),
        world_points=torch.randn(1, s, h, w, 3, generator=g).to(dtype),
        world_points_conf=None,
        image_hw=(h, w),
        pose_enc=torch.randn(1, s, 9, generator=g),
        conf_kind="exp_plus_one",
        sources={"family": "vggt"},
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_float32_file_round_trip_is_exact_in_the_runs_dtypes(tmp_path, dtype):
    pred = _predictions(dtype)
    images = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    path = scene_file(tmp_path / "run.json", "cat/scene 1")
    assert path.parent == tmp_path / "run.predictions" and path.name == "cat_scene_1.npz"
    size = save_scene(
        path, pred, {"scene_id": "cat/scene 1", "frame_ids": [3, 7]}, images, "float32"
    )
    assert size == path.stat().st_size and oct(path.stat().st_mode)[-3:] == "644"
    back = load_scene(path)
    for name in ("extrinsics", "intrinsics", "depth", "depth_conf", "world_points", "pose_enc"):
        a, b = getattr(pred, name), getattr(back.predictions, name)
        assert b.dtype == a.dtype and torch.equal(a, b), name
    assert back.predictions.world_points_conf is None
    assert back.predictions.conf_kind == "exp_plus_one" and back.predictions.image_hw == (3, 4)
    assert np.array_equal(back.images, images) and back.exact
    assert saved_scenes(tmp_path / "run.json") == {"cat/scene 1": path}


def test_float16_file_halves_the_maps_and_is_marked_inexact(tmp_path):
    pred = _predictions()
    path = tmp_path / "run.predictions" / "s.npz"
    save_scene(path, pred, {"scene_id": "s"}, None, "float16")
    back = load_scene(path)
    assert not back.exact and back.images is None
    assert back.predictions.depth.dtype == torch.float32  # cast back to the run's dtype
    assert torch.allclose(back.predictions.depth, pred.depth, rtol=1e-3)
    assert torch.equal(back.predictions.extrinsics, pred.extrinsics)  # cameras keep float64
    with pytest.raises(Exception, match="float16 \\(half the size\\) or float32"):
        save_scene(path, pred, {"scene_id": "s"}, None, "bfloat16")


def test_a_killed_save_leaves_no_file_that_looks_complete(tmp_path):
    final = tmp_path / "run.predictions" / "s.npz"
    script = f"""
import os, signal, torch
import avggt_bench.records.saved_predictions as sp
from test_rescore import _predictions
sp._sync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # dies after writing, before rename
sp.save_scene({str(final)!r}, _predictions(), {{"scene_id": "s"}}, None, "float32")
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(__file__), *sys.path])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert not final.exists()
    leftovers = list(final.parent.iterdir())
    assert leftovers and all(p.name.startswith(".") and p.suffix == ".tmp" for p in leftovers)
    assert saved_scenes(tmp_path / "run.json") == {}


def test_a_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "run.predictions" / "s.npz"
    save_scene(path, _predictions(), {"scene_id": "s"}, None, "float32")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated"):
        load_scene(path)
    assert not zipfile.is_zipfile(path)
    with pytest.raises(DataError, match="no such predictions file"):
        load_scene(tmp_path / "missing.npz")
