"""Point-map alignment and metrics: known answers."""

import time

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from avggt_bench.data.cameras import unproject
from avggt_bench.data.synthetic import SyntheticConfig, render_scene
from avggt_bench.metrics import points as P
from avggt_bench.metrics.dtu import dtu_official, radius_downsample
from avggt_bench.metrics.geometry import MetricError, umeyama_sim3

needs_open3d = pytest.mark.skipif(P.open3d_version() is None, reason="Open3D not importable")


@pytest.fixture(scope="module")
def scene_cloud():
    scene = render_scene(SyntheticConfig(num_views=3, width=48, height=36, seed=2))
    pts = unproject(
        scene.intrinsics.numpy(), scene.extrinsics.numpy(), scene.depth.double().numpy()
    )
    return pts.reshape(-1, 3)


def grid(n=30, z=0.0, step=0.1):
    u, v = np.meshgrid(np.arange(n) * step, np.arange(n) * step)
    return np.stack((u.ravel(), v.ravel(), np.full(u.size, z)), axis=1)


def test_accuracy_completeness_hand_values_and_swap():
    a = np.array([[0.0, 0, 0], [1, 0, 0], [5, 0, 0]])
    b = np.array([[0.0, 0, 0.5], [1, 0, 0], [1, 0, 2]])
    out = P.accuracy_completeness(a, b)
    assert out["acc"] == pytest.approx((0.5 + 0 + 4) / 3) and out["acc_med"] == 0.5
    assert out["comp"] == pytest.approx((0.5 + 0 + 2) / 3) and out["comp_med"] == 0.5
    swapped = P.accuracy_completeness(b, a)
    assert swapped["acc"] == out["comp"] and swapped["comp"] == out["acc"]
    assert swapped["acc_med"] == out["comp_med"] and swapped["comp_med"] == out["acc_med"]


def test_subset_superset_offset(scene_cloud):
    rng = np.random.default_rng(0)
    sub = scene_cloud[rng.choice(len(scene_cloud), 500, replace=False)]
    assert P.accuracy_completeness(sub, scene_cloud)["acc"] == 0.0
    assert P.accuracy_completeness(scene_cloud, sub)["comp"] == 0.0
    second = cKDTree(scene_cloud).query(scene_cloud, k=2)[0][:, 1]
    delta = 0.25 * second[second > 0].min()  # below half the minimum point spacing
    moved = scene_cloud + np.array([delta, 0, 0])
    out = P.accuracy_completeness(moved, scene_cloud)
    assert out["acc"] == pytest.approx(delta, abs=1e-12)
    assert out["comp"] == pytest.approx(delta, abs=1e-12)


def test_umeyama_identity_and_degenerate():
    pts = np.random.default_rng(1).normal(size=(100, 3))
    sim = umeyama_sim3(pts, pts)
    assert abs(sim.scale - 1) <= 1e-12
    np.testing.assert_allclose(sim.rotation, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(sim.translation, 0, atol=1e-12)
    line = np.linspace(0, 1, 50)[:, None] * np.array([1.0, 2, 3])
    for bad in (pts[:2], line, np.ones((10, 3))):
        with pytest.raises(MetricError) as err:
            umeyama_sim3(bad, bad)
        assert err.value.status == "degenerate_alignment"


@needs_open3d
def test_identity_metrics(scene_cloud):
    out = P.point_cloud_metrics(scene_cloud, scene_cloud)
    for k in ("acc", "acc_med", "comp", "comp_med"):
        assert out[k] == 0.0
    for k in ("nc1", "nc2", "nc"):
        assert abs(out[k] - 1) <= 1e-12
    _, params = P.align_umeyama_icp(scene_cloud, scene_cloud, 0.1)
    assert params["icp"]["fitness"] == 1.0


@needs_open3d
@pytest.mark.parametrize("threshold", [0.1, None])
def test_sim3_invariance(scene_cloud, threshold):
    base = P.point_cloud_metrics(scene_cloud, scene_cloud)
    extent = np.ptp(scene_cloud, axis=0).max()
    for seed, s in ((3, 0.1), (4, 10.0), (5, 2.7)):
        q = Rotation.random(random_state=seed).as_matrix()
        moved = s * scene_cloud @ q.T + np.array([4.0, -3.0, 1.0])
        aligned, _ = P.align_umeyama_icp(moved, scene_cloud, threshold)
        out = P.point_cloud_metrics(aligned, scene_cloud)
        for k, v in base.items():
            assert abs(out[k] - v) <= 1e-9 * extent, (k, out[k], v)


@needs_open3d
def test_swap_is_exact_for_normal_consistency(scene_cloud):
    other = scene_cloud[::2] + np.random.default_rng(6).normal(scale=0.01, size=(1, 3))
    a = P.point_cloud_metrics(other, scene_cloud)
    b = P.point_cloud_metrics(scene_cloud, other)
    assert a["acc"] == b["comp"] and a["acc_med"] == b["comp_med"]
    assert a["nc1"] == b["nc2"] and a["nc1_med"] == b["nc2_med"]


@needs_open3d
def test_planes_duplication_and_tiny_clouds():
    g0, g1 = grid(), grid(z=0.02)
    normals = P.estimate_normals(g0)
    np.testing.assert_allclose(np.abs(normals), np.tile([0, 0, 1.0], (len(g0), 1)), atol=1e-12)
    out = P.point_cloud_metrics(g1, g0)
    assert out["acc"] == pytest.approx(0.02, abs=1e-12)
    assert out["comp"] == pytest.approx(0.02, abs=1e-12)
    assert out["nc"] == pytest.approx(1.0, abs=1e-12)
    dup = P.point_cloud_metrics(np.concatenate((g1, g1)), g0)
    for k in ("acc", "comp", "nc"):
        assert dup[k] == pytest.approx(out[k], abs=1e-12)
    np.testing.assert_array_equal(
        P.estimate_normals(np.array([[0.0, 0, 0], [1, 2, 3]])), [[0, 0, 1.0], [0, 0, 1.0]]
    )


@needs_open3d
def test_icp_recovers_a_small_rigid_motion_and_reports_no_pairs(scene_cloud):
    rot = Rotation.from_rotvec(np.radians(2.0) * np.array([0.0, 0.6, 0.8])).as_matrix()
    t = np.array([0.01, 0.0, 0.0])
    moved = scene_cloud @ rot.T + t
    icp = P.icp_refine(moved, scene_cloud, 0.1)
    expected = np.eye(4)
    expected[:3, :3], expected[:3, 3] = rot.T, -rot.T @ t
    np.testing.assert_allclose(icp.transform, expected, atol=1e-6)
    far = P.icp_refine(scene_cloud + 100.0, scene_cloud, 0.1)
    assert far.status == "no_correspondences" and far.fitness == 0.0
    np.testing.assert_array_equal(far.transform, np.eye(4))


def test_median_scale_shift_removes_scale_and_z_shift_only():
    rng = np.random.default_rng(7)
    g = rng.normal(size=(2, 20, 30, 3)) + np.array([0, 0, 5.0])
    valid = rng.random((2, 20, 30)) > 0.2
    for s, dz in ((0.3, 0.0), (4.0, 2.5)):
        p = s * g + np.array([0, 0, dz])
        pa, ga, params = P.median_scale_shift(p, g, valid, "lower")
        np.testing.assert_allclose(pa[valid], ga[valid], atol=1e-12)
        assert params["scale"] == pytest.approx(1 / s, rel=1e-12)
    rot = Rotation.from_euler("y", 10, degrees=True).as_matrix()
    pa, ga, _ = P.median_scale_shift(g @ rot.T, g, valid, "numpy")
    assert P.accuracy_completeness(pa[valid], ga[valid])["acc"] > 1e-3  # not removed


def test_lower_median_and_centre_crop():
    assert P.median(np.array([1.0, 2, 3, 4]), "lower") == 2.0
    assert P.median(np.array([1.0, 2, 3, 4]), "numpy") == 2.5
    np.testing.assert_array_equal(
        P.median(np.array([[1.0, 4], [2, 3], [3, 1], [9, 2]]), "lower", 0), [2.0, 2.0]
    )
    m = P.centre_crop_mask((392, 518), 224)
    assert m.sum() == 224 * 224 and m[196 - 112, 259 - 112] and not m[196 - 113, 259]


def test_bbox_scale_center_and_fastvggt_chamfer(scene_cloud):
    moved = 3.0 * scene_cloud + np.array([1.0, 2.0, -1.0])
    aligned, params = P.bbox_scale_center(moved, scene_cloud)
    np.testing.assert_allclose(aligned, scene_cloud, atol=1e-12)
    assert params["scale"] == pytest.approx(1 / 3)
    assert P.fastvggt_chamfer(aligned, scene_cloud)["cd"] == pytest.approx(0.0, abs=1e-12)
    outlier = np.concatenate((moved, [[100.0, 100.0, 100.0]]))
    assert P.bbox_scale_center(outlier, scene_cloud)[1]["scale"] < params["scale"] / 5


def test_clipped_chamfer_and_voxels():
    a, b = grid(5), grid(5) + np.array([0, 0, 0.7])
    assert P.chamfer_clipped_sum(a, b) == 1.0
    pts = np.array([[0.0, 0, 0], [0.01, 0, 0], [0.2, 0, 0]])
    down = P.voxel_downsample(pts, 0.05)
    assert len(down) == 2 and np.allclose(sorted(down[:, 0]), [0.005, 0.2])


def test_subsample_draws_fastvggts_sample():
    pts = np.arange(300.0).reshape(100, 3)
    sub, idx = P.subsample(pts, 10, 33)
    assert len(set(idx.tolist())) == 10 and idx.min() >= 0 and idx.max() < 100
    np.testing.assert_array_equal(sub, pts[idx])
    np.testing.assert_array_equal(P.subsample(pts, 10, 33)[1], idx)  # deterministic
    assert not np.array_equal(P.subsample(pts, 10, 34)[1], idx)
    same, all_idx = P.subsample(pts, 100, 33)  # small enough: every point, in order
    assert same is pts and np.array_equal(all_idx, np.arange(100))
    # FastVGGT's compute_chamfer_distance (vggt/utils/eval_utils.py) seeds numpy's global
    # generator with 33 and draws np.random.choice(n, MAX_POINTS, replace=False): the same sample
    saved = np.random.get_state()
    try:
        np.random.seed(33)
        upstream = np.random.choice(100, 10, replace=False)
    finally:
        np.random.set_state(saved)
    np.testing.assert_array_equal(idx, upstream)


def test_dtu_official_semantics():
    ref = np.stack(np.meshgrid(np.arange(0, 50.0), np.arange(0, 50.0), [10.0]), -1).reshape(-1, 3)
    below = ref[:100] - np.array([0, 0, 8.0])  # z = 2: below the plane z = 5
    stl = np.concatenate((ref, below))
    bb = np.array([[0.0, 0, 0], [50, 50, 20]])
    obs = np.ones((101, 101, 101), dtype=bool)
    plane = np.array([0, 0, 1.0, -5.0])
    pred = ref + np.array([0, 0, 1.0])  # 1 mm above the reference
    far = np.array([[25.0, 25.0, 35.0]])  # 25 mm from the reference: excluded from Acc
    outside = np.array([[-60.5, 0, 10], [170.0, 0, 10]])  # outside [BB_min − 60, BB_max + 120)
    out = dtu_official(np.concatenate((pred, far, outside)), stl, obs, bb, 0.5, plane, seed=1)
    assert out["dtu_acc"] == pytest.approx(1.0) and out["n_acc_kept"] == len(pred)
    assert out["n_reference_above"] == len(ref)
    assert out["dtu_comp"] == pytest.approx(1.0)
    assert out["n_in_box"] == len(pred) + 1
    dense = np.random.default_rng(2).random((3000, 3)) * 2.0
    kept = radius_downsample(dense, 0.2, seed=3)
    assert len(cKDTree(kept).query_pairs(0.2)) == 0 and 0 < len(kept) < len(dense)
    np.testing.assert_array_equal(kept, radius_downsample(dense, 0.2, seed=3))


def test_acc_comp_timing_200k():
    rng = np.random.default_rng(8)
    a = rng.random((200_000, 3))
    b = a + rng.normal(scale=1e-3, size=a.shape)
    start = time.perf_counter()
    out = P.accuracy_completeness(a, b)
    print(f"\naccuracy_completeness 200k x 200k: {time.perf_counter() - start:.2f} s")
    # points ~0.017 apart, noise σ = 1e-3: each nearest neighbour is the partner, so both means are
    # the mean length of a 3D Gaussian offset, σ·2·sqrt(2/π)
    expected = 1e-3 * 2 * np.sqrt(2 / np.pi)
    assert out["acc"] == pytest.approx(expected, rel=0.02)
    assert out["comp"] == pytest.approx(expected, rel=0.02)


@pytest.mark.slow
@needs_open3d
def test_one_million_points_timing():
    rng = np.random.default_rng(9)
    a = rng.random((1_000_000, 3)) * np.array([4.0, 3.0, 2.0])
    b = a + rng.normal(scale=3e-3, size=a.shape)
    times = {}
    start = time.perf_counter()
    P.accuracy_completeness(a, b)
    times["acc_comp"] = time.perf_counter() - start
    start = time.perf_counter()
    aligned, params = P.align_umeyama_icp(a, b, 0.1)
    times["umeyama_icp"] = time.perf_counter() - start
    start = time.perf_counter()
    P.point_cloud_metrics(aligned, b)
    times["all_metrics_with_normals"] = time.perf_counter() - start
    print("\n1M points:", {k: round(v, 2) for k, v in times.items()})
    assert params["icp"]["fitness"] > 0.99
