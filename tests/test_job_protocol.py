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
    rec = run_job(compose_job(tmp_path, *ORACLE, "dataset=synthetic_faults"))
    record = saved(tmp_path)
    acc = record["metrics"]["accuracy"]
    assert acc["n_scenes"] == 2 and len(record["scenes"]) == 2
    assert acc["n_ok"] + acc["n_skipped"] + acc["n_failed"] == 2
    assert acc["n_ok"] < 2 and acc["not_evaluated"]
    assert all(r["message"] for r in acc["not_evaluated"])
    assert rec.status == "ok"  # one evaluable scene keeps the job ok; the rest is recorded


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
    assert row["num_views"] == 3 and row["forward_s"] > 0 and row["fidelity_s"] > 0
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
