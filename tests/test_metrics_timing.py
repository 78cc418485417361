"""The metric timing benchmark (small setting) and the noisy-prediction helper it relies on."""

import csv
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from avggt_bench.data.cameras import rigid_inverse
from avggt_bench.data.synthetic import SyntheticConfig, render_scene
from avggt_bench.metrics import points as P
from avggt_bench.metrics.geometry import as_poses_4x4
from avggt_bench.metrics.time_metrics import CSV_NAME, MD_NAME, TIMED, main, time_metrics
from avggt_bench.testing.predictions import noisy_cameras, noisy_predictions


def test_noisy_cameras_have_the_requested_size():
    w2c = as_poses_4x4(render_scene(SyntheticConfig(num_views=50, width=8, height=6)).extrinsics)
    noisy = noisy_cameras(w2c, rotation_deg=2.5, seed=3)
    rel = np.swapaxes(w2c[:, :3, :3], 1, 2) @ noisy[:, :3, :3]
    np.testing.assert_allclose(Rotation.from_matrix(rel).magnitude(), math.radians(2.5), atol=1e-12)
    # rotation only: camera centres unchanged
    np.testing.assert_allclose(
        rigid_inverse(noisy)[:, :3, 3], rigid_inverse(w2c)[:, :3, 3], atol=1e-12
    )
    moved = noisy_cameras(w2c, centre_sigma=0.1, seed=4)
    shift = rigid_inverse(moved)[:, :3, 3] - rigid_inverse(w2c)[:, :3, 3]
    assert 0.07 < shift.std() < 0.13
    np.testing.assert_allclose(moved[:, :3, :3], w2c[:, :3, :3], atol=0)


def test_noisy_predictions_depth_noise_and_consistency():
    scene = render_scene(SyntheticConfig(num_views=4, width=32, height=24, seed=5))
    pred = noisy_predictions(scene, "pi3", depth_sigma=0.05, seed=6)
    ratio = (pred.depth[0, ..., 0] / scene.depth.double())[scene.valid]
    assert 0.04 < float((ratio - 1).std()) < 0.06
    exact = noisy_predictions(scene, "pi3")
    torch.testing.assert_close(exact.depth[0, ..., 0], scene.depth.double(), atol=1e-6, rtol=0)


@pytest.mark.parametrize("icp", [True, False])
def test_time_metrics_small(icp):
    out = time_metrics(12, width=24, height=18, max_points=3000, icp=icp, normals=icp)
    assert out["num_pairs"] == 66 and out["num_points"] == 3000
    assert out["width"] == 24 and out["height"] == 18
    have = P.open3d_version() is not None
    for key in TIMED:
        expect_nan = not (icp and have) and key in ("points_align_s", "points_nc_s")
        assert math.isnan(out[key]) == expect_nan, key
        assert expect_nan or out[key] >= 0


def test_cli_writes_csv_and_markdown(tmp_path, capsys):
    main(["--views", "8", "--width", "16", "--height", "12", "--out", str(tmp_path)])
    rows = list(csv.DictReader((tmp_path / CSV_NAME).open()))
    assert [r["metric"] for r in rows] == [k.removesuffix("_s") for k in TIMED]
    assert rows[0]["size"] == "28" and rows[0]["num_views"] == "8"
    text = (tmp_path / MD_NAME).read_text()
    assert "16×12" in text and "| pose |" in text
    assert "| pose |" in capsys.readouterr().out
