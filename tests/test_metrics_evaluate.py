"""`evaluate_scene` / `aggregate` end to end on synthetic scenes: ground-truth-derived predictions
with errors of known size give the expected values for every task type; bad input gives a status."""

import math
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from avggt_bench.data.scene import Scene
from avggt_bench.data.synthetic import SyntheticConfig, render_scene
from avggt_bench.errors import ConfigError
from avggt_bench.metrics import points as P
from avggt_bench.metrics.adapters import gt_on_grid
from avggt_bench.metrics.aggregate import aggregate
from avggt_bench.metrics.evaluate import evaluate_scene, parent_as_ground_truth
from avggt_bench.metrics.evaluation_protocol import Protocol
from avggt_bench.metrics.results import SceneResult
from avggt_bench.metrics.trajectory import trajectory_errors
from avggt_bench.models.preprocess import PreprocessConfig, preprocess
from avggt_bench.testing.predictions import predictions_from_scene

needs_open3d = pytest.mark.skipif(P.open3d_version() is None, reason="Open3D not importable")
Q = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
V = np.array([1.0, -2.0, 0.5])


@pytest.fixture(scope="module")
def scene():
    return render_scene(SyntheticConfig(num_views=6, width=56, height=42, seed=1))


@pytest.fixture(scope="module")
def walk():
    return render_scene(
        SyntheticConfig(num_views=24, width=28, height=14, seed=2, trajectory="walk")
    )


def pi3(scene, **kw):
    return predictions_from_scene(scene, "pi3", scale=2.5, rotation=Q, translation=V, **kw)


# ------------------------------------------------------------------------------ relpose


def test_relpose_perfect_and_one_rotated_camera(scene):
    preset = {"task": "relpose", "thresholds": [3, 5, 15, 30]}
    for pred in (predictions_from_scene(scene, scale=3.0), pi3(scene)):
        res = evaluate_scene(pred, scene, preset)
        assert res.status == "ok"
        assert all(v == 100.0 for v in res.metrics.values())
    pred = predictions_from_scene(scene)
    k, theta = 2, 10.0
    rot = Rotation.from_rotvec(np.radians(theta) * np.array([0.0, 1.0, 0.0])).as_matrix()
    e = pred.extrinsics[0, k].numpy()
    centre = -e[:, :3].T @ e[:, 3]
    e[:, :3] = rot @ e[:, :3]
    e[:, 3] = -e[:, :3] @ centre
    pred.extrinsics[0, k] = torch.from_numpy(e)
    res = evaluate_scene(pred, scene, preset)
    # 5 of 15 pairs contain camera k with e_R = 10°: RRA@5 = 10/15, RRA@15 = 100
    assert res.metrics["rra@5"] == pytest.approx(100 * 10 / 15)
    assert res.metrics["rra@15"] == 100.0
    assert res.groups["pose"].params["n_pairs"] == 15


def test_pooled_versus_per_category_mean(scene):
    """Category A one perfect sequence, category B three failed ones: 50 vs 25."""
    a = render_scene(SyntheticConfig(num_views=10, width=28, height=14, seed=3))
    a.meta["category"] = "A"
    results = [evaluate_scene(predictions_from_scene(a), a, {"task": "relpose"})]
    for seed in (4, 5, 6):
        b = render_scene(SyntheticConfig(num_views=10, width=28, height=14, seed=seed))
        b.meta["category"] = "B"
        pred = predictions_from_scene(b)
        pred.extrinsics[:] = float("nan")
        r = evaluate_scene(pred, b, {"task": "relpose"})
        assert r.status == "ok" and "non-finite" in r.groups["pose"].message
        results.append(r)
    pooled = aggregate(results, {"task": "relpose", "aggregation": "pooled_pairs"})
    per_cat = aggregate(results, {"task": "relpose", "aggregation": "per_category_mean"})
    for t in (3, 5, 15, 30):
        assert pooled["metrics"][f"auc@{t}"] == pytest.approx(25.0)
        assert per_cat["metrics"][f"auc@{t}"] == pytest.approx(50.0)
    assert pooled["groups"]["pose"]["n_pairs"] == 180
    assert per_cat["groups"]["pose"]["n_categories"] == 2


# --------------------------------------------------------------------------- trajectory


def test_trajectory_perfect_and_noise_of_known_size(walk):
    preset = {"task": "trajectory"}
    res = evaluate_scene(pi3(walk), walk, preset)
    assert res.status == "ok" and res.metrics["ate"] < 1e-9
    pred = predictions_from_scene(walk)
    sigma = 0.01
    e = pred.extrinsics[0].numpy().copy()
    rng = np.random.default_rng(0)
    centres = -np.einsum("sji,sj->si", e[:, :, :3], e[:, :, 3])
    noisy = centres + rng.normal(scale=sigma, size=centres.shape)
    e[:, :, 3] = -np.einsum("sij,sj->si", e[:, :, :3], noisy)
    pred.extrinsics[0] = torch.from_numpy(e)
    res = evaluate_scene(pred, walk, preset)
    c2w = np.tile(np.eye(4), (24, 1, 1))
    c2w[:, :3, :3] = np.swapaxes(e[:, :, :3], 1, 2)
    c2w[:, :3, 3] = noisy
    gt = walk.camera_to_world().numpy()
    assert res.metrics["ate"] == pytest.approx(trajectory_errors(c2w, gt)["ate"], rel=1e-12)
    n = 24  # E[ATE²] = σ²·(3n − 7)/n after a 7-parameter fit
    assert 0.5 < res.metrics["ate"] / (sigma * math.sqrt((3 * n - 7) / n)) < 1.5
    assert res.metrics["rpe_rot"] < 1e-6


def test_trajectory_compat_values_are_recorded(walk):
    preset = {
        "task": "trajectory",
        "compat": {"traj_input": "w2c", "traj_align": "sim3_then_origin"},
    }
    res = evaluate_scene(pi3(walk), walk, preset)
    assert res.status == "ok"
    assert res.metrics["ate"] < 1e-9 and res.metrics["ate_compat"] > 1e-3
    assert res.groups["trajectory"].params["compat"]["traj_input"] == "w2c"


# ---------------------------------------------------------------------------- points


@needs_open3d
@pytest.mark.parametrize("family", ["vggt", "pi3"])
def test_mv_recon_perfect_under_similarity(scene, family):
    pred = predictions_from_scene(scene, scale=3.0) if family == "vggt" else pi3(scene)
    res = evaluate_scene(pred, scene, {"task": "mv_recon", "metrics": ["acc", "comp", "nc"]})
    assert res.status == "ok", res.message
    extent = float(np.ptp(scene.meta["room"]["max"]))
    for k in ("acc", "comp", "acc_med", "comp_med"):
        assert res.metrics[k] <= 1e-9 * max(extent, 1.0)
    assert res.metrics["nc"] == pytest.approx(1.0, abs=1e-9)
    params = res.groups["points"].params
    assert params["umeyama"]["scale"] == pytest.approx(1 / (3.0 if family == "vggt" else 2.5))
    assert params["icp"]["fitness"] == 1.0


def test_mv_recon_known_offset_and_report_unit(scene):
    pred = predictions_from_scene(scene, "pi3")  # metric, in the ground-truth world
    world = pred.world_points[0].numpy().reshape(-1, 3)
    second = cKDTree(world).query(world, k=2)[0][:, 1]
    delta = 0.25 * second[second > 0].min()
    pred.world_points += torch.tensor([0.0, 0.0, delta], dtype=pred.world_points.dtype)
    preset = {"task": "mv_recon", "alignment": {"type": "none"}, "metrics": ["acc", "comp"]}
    res = evaluate_scene(pred, scene, preset)
    assert res.metrics["acc"] == pytest.approx(delta, abs=1e-12)
    assert res.metrics["comp"] == pytest.approx(delta, abs=1e-12)
    mm = evaluate_scene(pred, scene, {**preset, "report_unit": "mm"})
    assert mm.metrics["acc"] == pytest.approx(1000 * delta, rel=1e-12)
    assert mm.unit == "mm"


@needs_open3d
@pytest.mark.parametrize("family", ["vggt", "pi3"])
def test_mv_recon_median_variant_on_the_input_grid(scene, family):
    """CUT3R style: ground truth goes through the input crop-resize; the (exact) prediction is
    made on that grid, in its first camera up to scale, so the median shift and scale undo it."""
    pre = preprocess(scene.images, PreprocessConfig(mode="crop", size=28))
    grid = gt_on_grid(scene, "input", pre.transforms)
    on_grid = _scene_on_grid(scene, grid)
    pred = predictions_from_scene(on_grid, scale=0.2) if family == "vggt" else pi3(on_grid)
    preset = {
        "task": "mv_recon",
        "alignment": {"type": "median_scale_shift_crop224_icp", "crop": 14},
        "gt_compare": "input",
    }
    res = evaluate_scene(pred, scene, preset, pre.transforms)
    assert res.status == "ok", res.message
    assert res.metrics["acc"] < 1e-9 and res.metrics["comp"] < 1e-9
    expected = (grid.valid & P.centre_crop_mask(grid.hw, 14)[None]).sum()
    assert res.groups["points"].params["n_gt"] == expected


def _scene_on_grid(scene, grid):
    s, (h, w) = grid.depth.shape[0], grid.hw
    return replace(
        scene,
        images=torch.zeros(s, h, w, 3, dtype=torch.uint8),
        intrinsics=torch.from_numpy(grid.K),
        extrinsics=torch.from_numpy(grid.w2c[:, :3]),
        depth=torch.from_numpy(grid.depth).float(),
        valid=torch.from_numpy(grid.valid),
    )


def test_scannet_recon_bbox_chamfer(scene):
    pred = predictions_from_scene(scene, scale=0.5)
    gt_world = predictions_from_scene(scene, "pi3").world_points[0].reshape(-1, 3).double()
    with_ref = replace(scene, points=gt_world.clone())
    res = evaluate_scene(pred, with_ref, {"task": "scannet_recon"})
    assert res.status == "ok", res.message
    assert res.metrics["cd"] == pytest.approx(0.0, abs=1e-9)
    assert res.metrics["ate"] < 1e-9
    low = predictions_from_scene(scene, conf=1.0)
    res = evaluate_scene(low, with_ref, {"task": "scannet_recon"})
    assert res.status == "no_valid_pixels" and "confidence" in res.message


# ----------------------------------------------------------------------------- depth


def test_video_and_mono_depth_with_known_errors(scene):
    eps = 0.04
    depth = scene.depth.double().numpy() * (1 + eps)
    pred = predictions_from_scene(scene, "pi3", depth=depth)  # metric: no world change
    res = evaluate_scene(pred, scene, {"task": "video_depth", "alignment": "metric"})
    assert res.metrics["abs_rel"] == pytest.approx(eps, rel=1e-9)
    assert res.metrics["delta1"] == 1.0
    assert res.groups["depth"].weight == float(scene.valid.sum())
    scaled = predictions_from_scene(scene, scale=7.0)
    for task, kind in (
        ("video_depth", "median"),
        ("video_depth", "scale_shift_l1"),
        ("mono_depth", "scale"),
    ):
        res = evaluate_scene(scaled, scene, {"task": task, "alignment": kind})
        assert res.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-9), (task, kind)


def test_pixel_weighted_aggregation(scene):
    preset = {"task": "video_depth", "alignment": "metric"}
    d = scene.depth.double().numpy()
    r1 = evaluate_scene(predictions_from_scene(scene, "pi3", depth=d * 1.1), scene, preset)
    half = scene.subset([0, 1, 2])
    r2 = evaluate_scene(predictions_from_scene(half, "pi3", depth=d[:3] * 1.3), half, preset)
    agg = aggregate([r1, r2], preset)
    n1, n2 = r1.groups["depth"].weight, r2.groups["depth"].weight
    assert agg["metrics"]["abs_rel"] == pytest.approx((n1 * 0.1 + n2 * 0.3) / (n1 + n2))


# ------------------------------------------------------------------------- bad input


def test_bad_input_gives_a_status_never_an_exception(scene, walk):
    pred = predictions_from_scene(scene)
    short = scene.subset([0, 1, 2])
    for task in ("relpose", "trajectory", "mv_recon", "video_depth"):
        res = evaluate_scene(pred, short, {"task": task})
        assert res.status == "invalid_input" and "6 predicted frames for 3" in res.message
    dark = scene.subset(range(6))
    dark.valid = torch.zeros_like(dark.valid)
    assert evaluate_scene(pred, dark, {"task": "video_depth"}).status == "no_valid_pixels"
    assert evaluate_scene(pred, dark, {"task": "mv_recon"}).status == "no_valid_pixels"
    nan = predictions_from_scene(scene)
    nan.world_points[0, 1, 3, 3] = float("nan")
    nan.depth[0, 2, 5, 5] = float("nan")
    nan.extrinsics[0, 4] = float("nan")
    for task in ("trajectory", "mv_recon", "video_depth"):
        assert evaluate_scene(nan, scene, {"task": task}).status == "nonfinite_prediction", task
    two = walk.subset([0, 1])
    res = evaluate_scene(predictions_from_scene(two), two, {"task": "trajectory"})
    assert res.status == "degenerate_alignment" and math.isnan(res.metrics["ate"])
    res = evaluate_scene(pred, scene, {"task": "bogus"})
    assert res.status == "error" and "valid" in res.message


def test_aggregate_counts_every_scene(scene, walk):
    preset = {"task": "trajectory"}
    ok = evaluate_scene(predictions_from_scene(walk), walk, preset)
    two = walk.subset([0, 1])
    bad = evaluate_scene(predictions_from_scene(two), two, preset)
    skipped = SceneResult.skipped("seq-9", "synthetic", "missing_frames")
    agg = aggregate([ok, bad, skipped], preset)
    assert agg["n_scenes"] == 3 and agg["n_ok"] == 1
    assert agg["n_failed"] == 1 and agg["n_skipped"] == 1
    assert {d["status"] for d in agg["not_evaluated"]} == {"degenerate_alignment", "skipped"}
    assert agg["groups"]["trajectory"]["n_evaluated"] == 1
    assert agg["metrics"]["ate"] == ok.metrics["ate"]


def test_protocol_defaults_and_validation():
    p = Protocol.from_preset(
        {"task": "mv_recon", "alignment": {"type": "umeyama_icp", "icp_threshold": 0.1}}
    )
    assert p.groups == ("points",) and p.aggregation == "per_scene_mean"
    assert Protocol.from_preset({"task": "relpose", "metrics": ["auc", "ate"]}).groups == (
        "pose",
        "trajectory",
    )
    with pytest.raises(ConfigError, match="valid"):
        Protocol.from_preset({"task": "mv_recon", "alignment": {"type": "procrustes"}})


def test_800_view_pose_and_trajectory_timing():
    """800 cameras on a smooth random path (a tiny image each: only the cameras matter here)."""
    n = 800
    rng = np.random.default_rng(3)
    centres = np.cumsum(rng.normal(scale=0.05, size=(n, 3)), axis=0)
    rots = Rotation.from_rotvec(np.cumsum(rng.normal(scale=0.02, size=(n, 3)), axis=0))
    w2c = np.zeros((n, 3, 4))
    w2c[:, :, :3] = rots.as_matrix()
    w2c[:, :, 3] = -np.einsum("sij,sj->si", w2c[:, :, :3], centres)
    big = Scene(
        "synthetic",
        "cameras-800",
        torch.zeros(n, 2, 2, 3, dtype=torch.uint8),
        intrinsics=torch.eye(3, dtype=torch.float64).expand(n, 3, 3).clone(),
        extrinsics=torch.from_numpy(w2c),
        depth=torch.ones(n, 2, 2),
    )
    pred = predictions_from_scene(big, "pi3", scale=2.0, rotation=Q, translation=V)
    timings = {}
    for task in ("relpose", "trajectory"):
        start = time.perf_counter()
        res = evaluate_scene(pred, big, {"task": task})
        timings[task] = time.perf_counter() - start
        assert res.status == "ok", res.message
    print("\n800 views, evaluate_scene:", {k: round(v, 3) for k, v in timings.items()})
    assert res.metrics["ate"] < 1e-8


@needs_open3d
def test_fidelity_against_the_dense_parent(scene):
    """The parent's predictions serve as ground truth on the network grid: an identical
    accelerated prediction scores perfectly in every protocol metric."""
    parent = pi3(scene)
    gt = parent_as_ground_truth(parent, scene)
    for task in ("relpose", "trajectory", "mv_recon"):
        res = evaluate_scene(pi3(scene), gt, {"task": task})
        assert res.status == "ok", (task, res.message)
    assert res.metrics["acc"] < 1e-6  # the parent's depth is stored as float32
    res = evaluate_scene(pi3(scene), gt, {"task": "video_depth", "alignment": "median"})
    assert res.metrics["abs_rel"] < 1e-6


@needs_open3d
def test_dtu_official_through_the_evaluation_files(tmp_path, scene):
    """dtu_overall reads ObsMask/Plane .mat files and the STL .ply under the loader's
    `dtu_eval_root`; a perfect prediction scores 0 mm; a missing kit is a clear status."""
    import open3d as o3d
    from scipy.io import savemat

    gt_world = predictions_from_scene(scene, "pi3").world_points[0].reshape(-1, 3).numpy()
    stl_mm = gt_world * 1000.0
    lo, hi = stl_mm.min(0) - 1.0, stl_mm.max(0) + 1.0
    res = 50.0
    shape = tuple(int(v) for v in np.ceil((hi - lo) / res) + 2)
    (tmp_path / "ObsMask").mkdir()
    (tmp_path / "Points" / "stl").mkdir(parents=True)
    savemat(
        tmp_path / "ObsMask" / "ObsMask7_10.mat",
        {"ObsMask": np.ones(shape, dtype=np.uint8), "BB": np.stack((lo, hi)), "Res": res},
    )
    savemat(tmp_path / "ObsMask" / "Plane7.mat", {"P": np.array([[0.0], [0], [0], [1]])})
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(stl_mm))
    o3d.io.write_point_cloud(str(tmp_path / "Points" / "stl" / "stl007_total.ply"), cloud)
    dtu = replace(scene, scene_id="scan7", meta={**scene.meta, "dtu_eval_root": str(tmp_path)})
    preset = {
        "task": "mv_recon",
        "metrics": ["acc", "comp", "dtu_overall"],
        "report_unit": "mm",
        "gt_compare": "gt_native",
    }
    res = evaluate_scene(pi3(scene), dtu, preset)
    assert res.status == "ok", res.message
    assert res.metrics["dtu_overall"] == pytest.approx(0.0, abs=1e-6)
    assert res.groups["points"].params["dtu"]["n_observed"] > 0
    missing = replace(dtu, meta={**scene.meta, "dtu_eval_root": str(tmp_path / "nope")})
    res = evaluate_scene(pi3(scene), missing, preset)
    assert res.status == "invalid_input" and "ObsMask7_10.mat" in res.message
