"""Protocol presets through the job: per-scene metrics, fidelity to the dense parent, skipped and
failed scenes counted, the random-weights flag, and the ground-truth oracle's known answers."""

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from avggt_bench.errors import ConfigError
from avggt_bench.paths import config_dir
from avggt_bench.run import requested_views, run_job

SMALL_SCENES = ["dataset.width=56", "dataset.height=42"]
ORACLE = ["model=ground_truth", *SMALL_SCENES]
NET = ["model=vggt_small", "model.preprocess.size=42", "timing.warmup=0", "timing.repeats=1"]


def compose_job(tmp_path, *overrides):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(
            "config",
            overrides=[f"paths.root={tmp_path}", f"record.dir={tmp_path}/records", *overrides],
        )


def saved(tmp_path) -> dict:
    [path] = sorted((tmp_path / "records").glob("*.json"))
    return json.loads(path.read_text())


def test_oracle_without_noise_scores_perfectly(tmp_path):
    rec = run_job(compose_job(tmp_path, *ORACLE, "dataset=synthetic_sparse"))
    assert rec.status == "ok", rec.message
    acc = saved(tmp_path)["metrics"]["accuracy"]
    assert acc["n_ok"] == 3 and acc["n_skipped"] == 0 and acc["rule"] == "pooled_pairs"
    for t in (3, 5, 15, 30):
        assert acc["metrics"][f"auc@{t}"] == pytest.approx(100.0)
        assert acc["metrics"][f"rra@{t}"] == pytest.approx(100.0)
    assert acc["meaningful"] is False and "oracle" in acc["note"]


@pytest.mark.parametrize("family", ["vggt", "pi3"])
def test_oracle_rotation_noise_of_known_size_gives_the_expected_rra(tmp_path, family):
    # the last of 10 cameras turned by 10°: 9 of the 45 pairs have a 10° rotation error
    rec = run_job(
        compose_job(
            tmp_path,
            *ORACLE,
            "dataset=synthetic_sparse",
            "model.rotation_noise_deg=10",
            f"model.family={family}",
        )
    )
    assert rec.status == "ok", rec.message
    record = saved(tmp_path)
    acc = record["metrics"]["accuracy"]["metrics"]
    assert acc["rra@3"] == pytest.approx(100 * (1 - 9 / 45))
    assert acc["rra@5"] == pytest.approx(100 * (1 - 9 / 45))
    assert acc["rra@15"] == pytest.approx(100.0) and acc["rra@30"] == pytest.approx(100.0)
    assert len(record["scenes"]) == 3 and {r["num_views"] for r in record["scenes"]} == {10}
    assert record["job"]["num_views"] is None and "vprotocol" in record["run_id"]


def test_oracle_depth_noise_gives_abs_rel_equal_to_the_noise(tmp_path):
    rec = run_job(
        compose_job(
            tmp_path,
            *ORACLE,
            "dataset=synthetic_video_depth",
            "dataset.alignment.type=metric",
            "model.depth_noise=0.1",
        )
    )
    assert rec.status == "ok", rec.message
    metrics = saved(tmp_path)["metrics"]["accuracy"]["metrics"]
    assert metrics["abs_rel"] == pytest.approx(0.1, rel=1e-6)
    assert metrics["delta1"] == pytest.approx(1.0)


def test_broken_frames_and_degenerate_scenes_are_counted_not_dropped(tmp_path):
    # synthetic_faults: frame 3 of each scene has a NaN pose (dropped), seed1-static has every
    # camera at one pose (a degenerate trajectory)
    rec = run_job(compose_job(tmp_path, *ORACLE, "dataset=synthetic_faults"))
    record = saved(tmp_path)
    acc = record["metrics"]["accuracy"]
    status = {r["scene_id"]: r["status"] for r in record["scenes"]}
    assert status == {"seed0-walk": "ok", "seed1-static": "degenerate_alignment"}
    assert all(r["dropped_frames"] == [[3, "nan_pose"]] for r in record["scenes"])
    assert (acc["n_scenes"], acc["n_ok"], acc["n_skipped"], acc["n_failed"]) == (2, 1, 0, 1)
    assert [r["scene"] for r in acc["not_evaluated"]] == ["seed1-static"]
    assert acc["not_evaluated"][0]["message"]
    # a metric's verdict on the data is not a run failure: the job stays ok
    assert rec.status == "ok"
    assert record["timings"]["forward_scenes"] == 1 and "forward" not in record["timings"]


def test_an_error_in_one_scene_keeps_the_others_and_makes_the_job_partial(tmp_path, monkeypatch):
    import torch

    import avggt_bench.job.protocol as job_protocol

    real = job_protocol.oracle_predictions

    def flaky(scene, *args, **kwargs):
        if scene.scene_id == "seed1-walk":
            raise RuntimeError("injected failure in the forward")
        if scene.scene_id == "seed2-orbit":
            raise torch.OutOfMemoryError("injected out of memory")
        return real(scene, *args, **kwargs)

    monkeypatch.setattr(job_protocol, "oracle_predictions", flaky)
    rec = run_job(compose_job(tmp_path, *ORACLE, "dataset=synthetic_sparse"))
    record = saved(tmp_path)
    rows = {r["scene_id"]: r for r in record["scenes"]}
    assert list(rows) == ["seed0-orbit", "seed1-walk", "seed2-orbit"]
    assert rows["seed0-orbit"]["status"] == "ok" and rows["seed0-orbit"]["metrics"]["rra@30"] == 100
    assert rows["seed1-walk"]["status"] == "error" and rows["seed1-walk"]["stage"] == "forward"
    assert "RuntimeError: injected failure" in rows["seed1-walk"]["message"]
    assert "Traceback" in rows["seed1-walk"]["message"]  # our own code's failure: traceback kept
    assert rows["seed2-orbit"]["status"] == "oom" and "injected" in rows["seed2-orbit"]["message"]
    assert rec.status == record["status"] == "partial"
    assert "2 of 3 scenes failed" in record["message"]
    acc = record["metrics"]["accuracy"]
    assert (acc["n_ok"], acc["n_failed"]) == (1, 2)
    assert record["timings"]["forward_total_s"] == pytest.approx(
        rows["seed0-orbit"]["forward"]["median_s"]
    )


def test_a_key_error_inside_a_loader_is_an_error_with_traceback_not_a_skip(tmp_path, monkeypatch):
    from avggt_bench.data.protocol_scenes import ProtocolDataset

    real_loader = ProtocolDataset.loader

    class Buggy:
        def __init__(self, loader):
            self._loader = loader

        def __getattr__(self, name):
            return getattr(self._loader, name)

        def load(self, sequence, *args, **kwargs):
            if sequence == "seed1-walk":
                return {}["frame_meta"]  # a bug of our own loader code: KeyError
            return self._loader.load(sequence, *args, **kwargs)

    monkeypatch.setattr(
        ProtocolDataset, "loader", property(lambda self: Buggy(real_loader.fget(self)))
    )
    rec = run_job(compose_job(tmp_path, *ORACLE, "dataset=synthetic_sparse"))
    record = saved(tmp_path)
    rows = {r["scene_id"]: r for r in record["scenes"]}
    assert list(rows) == ["seed0-orbit", "seed1-walk", "seed2-orbit"]
    bad = rows["seed1-walk"]
    assert bad["status"] == "error" and "KeyError: 'frame_meta'" in bad["message"]
    assert "Traceback" in bad["message"] and "load_error" not in bad["message"]
    assert rows["seed0-orbit"]["status"] == rows["seed2-orbit"]["status"] == "ok"
    assert rec.status == "partial" and record["metrics"]["accuracy"]["n_skipped"] == 0


def test_accelerated_network_gets_protocol_metrics_and_fidelity_with_random_flag(tmp_path):
    rec = run_job(
        compose_job(
            tmp_path,
            *NET,
            *SMALL_SCENES,
            "dataset=synthetic_sparse",
            "attention=avggt_2",
            "num_views=3",
            "dataset.scenes=[seed0-orbit]",
        )
    )
    assert rec.status == "ok", rec.message
    record = saved(tmp_path)
    acc, fid = record["metrics"]["accuracy"], record["metrics"]["fidelity_protocol"]
    assert acc["n_ok"] == 1 and fid["n_ok"] == 1
    assert acc["meaningful"] is False and "random weights" in acc["note"]
    row = record["scenes"][0]
    assert row["num_views"] == 3 and row["fidelity_s"] > 0
    assert len(row["forward"]["times_s"]) == 1 and row["forward"]["median_s"] > 0
    assert 0 <= row["fidelity_to_dense"]["pose_auc@30"] <= 100  # the single-scene fidelity
    assert record["timings"]["forward_total_s"] == row["forward"]["median_s"]
    assert set(row["fidelity"]) >= {"status", "rra@30", "auc@30"}
    for value in (*acc["metrics"].values(), *fid["metrics"].values()):
        assert 0.0 <= value <= 100.0 and np.isfinite(value)


def test_dense_network_fidelity_to_itself_is_skipped_and_accuracy_recorded(tmp_path):
    rec = run_job(
        compose_job(
            tmp_path,
            *NET,
            *SMALL_SCENES,
            "dataset=synthetic_sparse",
            "num_views=2",
            "dataset.scenes=[seed1-walk]",
        )
    )
    assert rec.status == "ok", rec.message
    record = saved(tmp_path)
    assert "fidelity_protocol" not in record["metrics"]
    assert record["metrics"]["accuracy"]["n_ok"] == 1 and "fidelity" not in record["scenes"][0]


def test_num_views_semantics():
    def cfg(views, dataset):
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            return compose("config", overrides=[f"dataset={dataset}", f"num_views={views}"])

    assert requested_views(cfg("null", "synthetic_sparse")) is None
    assert requested_views(cfg("null", "synthetic")) == 16
    assert requested_views(cfg(8, "synthetic_sparse")) == 8
    with pytest.raises(ConfigError, match="not a number"):
        requested_views(cfg("many", "synthetic"))
    with pytest.raises(ConfigError, match="at least one view"):
        requested_views(cfg(0, "synthetic"))


def test_the_protocol_is_validated_once_per_job_not_per_scene(tmp_path, monkeypatch):
    from avggt_bench.metrics import evaluation_protocol

    calls = []
    original = evaluation_protocol.Protocol.from_preset.__func__

    def counting(cls, preset):
        calls.append(preset.get("gt_compare") if hasattr(preset, "get") else None)
        return original(cls, preset)

    monkeypatch.setattr(evaluation_protocol.Protocol, "from_preset", classmethod(counting))
    rec = run_job(compose_job(tmp_path, *ORACLE, "dataset=synthetic_sparse"))
    assert rec.status == "ok", rec.message
    assert len(saved(tmp_path)["scenes"]) == 3
    assert len(calls) == 2  # the preset's protocol and its fidelity twin, for all three scenes
