"""Relative pose errors and AUC: known answers, and the pair orders written out from the
evaluation code they reproduce."""

import math

import numpy as np
import pytest
import torch

from avggt_bench.metrics.geometry import project_so3
from avggt_bench.metrics.pose import FAILURE_DEG, LEGACY, pose_auc, relative_pose_errors
from avggt_bench.models.vggt.pose_encoding import quat_to_mat


def random_cameras(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    rot = quat_to_mat(q / q.norm(dim=-1, keepdim=True))
    t = torch.randn(n, 3, 1, generator=g, dtype=torch.float64) * 2
    return torch.cat((rot, t), dim=-1)


def axis_angle(axis, deg):
    axis = torch.tensor(axis, dtype=torch.float64)
    axis = axis / axis.norm()
    half = math.radians(deg) / 2
    return quat_to_mat(
        torch.cat((axis * math.sin(half), torch.tensor([math.cos(half)], dtype=torch.float64)))
    )


def sim3(w2c, s, rot_q, v):
    """Same cameras in a world transformed by X' = s Q X + v."""
    rot, t = w2c[:, :, :3], w2c[:, :, 3:]
    new_rot = rot @ rot_q.T
    new_t = s * t - new_rot @ v[:, None]
    return torch.cat((new_rot, new_t), dim=-1)


@pytest.mark.parametrize("order", ["vggt", "pi3"])
def test_identity_gives_zero_error_and_full_auc(order):
    cams = random_cameras(10)
    err = relative_pose_errors(cams, cams, order)
    assert err.rot_deg.numel() == 45
    assert err.rot_deg.max() <= 1e-5 and err.trans_deg.max() <= 1e-5
    for t in (3, 5, 15, 30):
        assert pose_auc(err.rot_deg, err.trans_deg, t) == 1.0


def test_similarity_invariance_and_scale_freedom():
    cams = random_cameras(8, seed=1)
    moved = sim3(
        cams, 37.0, axis_angle([1, 2, 3], 70), torch.tensor([1.0, -2.0, 5.0], dtype=torch.float64)
    )
    base = relative_pose_errors(cams, random_cameras(8, seed=2))
    err = relative_pose_errors(moved, random_cameras(8, seed=2))
    torch.testing.assert_close(err.rot_deg, base.rot_deg, atol=1e-7, rtol=0)
    torch.testing.assert_close(err.trans_deg, base.trans_deg, atol=1e-7, rtol=0)
    pred = random_cameras(8, seed=2)
    scaled = pred.clone()
    scaled[:, :, 3] *= 0.01
    a, b = relative_pose_errors(pred, cams), relative_pose_errors(scaled, cams)
    torch.testing.assert_close(a.rot_deg, b.rot_deg, atol=1e-7, rtol=0)
    torch.testing.assert_close(a.trans_deg, b.trans_deg, atol=1e-7, rtol=0)


@pytest.mark.parametrize("order", ["vggt", "pi3"])
def test_known_rotation_error_on_one_camera(order):
    cams = random_cameras(5, seed=3)
    pred = cams.clone()
    k, theta = 2, 7.5
    centre = -cams[k, :, :3].T @ cams[k, :, 3]
    pred[k, :, :3] = axis_angle([0.3, 1, 0], theta) @ cams[k, :, :3]
    pred[k, :, 3] = -pred[k, :, :3] @ centre
    err = relative_pose_errors(pred, cams, order)
    with_k = (err.i == k) | (err.j == k)
    assert torch.allclose(
        err.rot_deg[with_k], torch.full_like(err.rot_deg[with_k], theta), atol=1e-9
    )
    assert err.rot_deg[~with_k].max() < 1e-5


def test_known_translation_error_and_sign_invariance():
    eye = torch.eye(3, dtype=torch.float64)
    gt = torch.stack(
        [
            torch.cat((eye, torch.zeros(3, 1, dtype=torch.float64)), 1),
            torch.cat((eye, torch.tensor([[-1.0], [0], [0]], dtype=torch.float64)), 1),
        ]
    )
    for phi, expected in [(30.0, 30.0), (120.0, 60.0), (180.0, 0.0)]:
        rot = axis_angle([0, 0, 1], phi)
        pred = gt.clone()
        pred[1, :, 3] = -(rot @ torch.tensor([1.0, 0, 0], dtype=torch.float64))
        for order in ("vggt", "pi3"):
            e = relative_pose_errors(pred, gt, order).trans_deg[0].item()
            assert e == pytest.approx(expected, abs=1e-5)  # arccos floor ≈ 1.8e-6°


def test_symmetry_pair_order_and_precision():
    gt, pred = random_cameras(6, seed=4), random_cameras(6, seed=5)
    a, b = relative_pose_errors(pred, gt), relative_pose_errors(gt, pred)
    torch.testing.assert_close(a.rot_deg, b.rot_deg, atol=1e-9, rtol=0)
    torch.testing.assert_close(a.trans_deg, b.trans_deg, atol=1e-9, rtol=0)
    pi3 = relative_pose_errors(pred, gt, "pi3")
    cam_i = relative_pose_errors(pred, gt, "camera_i")
    assert torch.equal(cam_i.rot_deg, a.rot_deg) and torch.equal(cam_i.trans_deg, a.trans_deg)
    torch.testing.assert_close(a.rot_deg, pi3.rot_deg, atol=1e-9, rtol=0)
    assert (a.trans_deg - pi3.trans_deg).abs().max() > 1e-6
    legacy = relative_pose_errors(pred, gt, LEGACY)
    assert (legacy.rot_deg - a.rot_deg).abs().max() > 1e-3  # the legacy form is another metric
    f32 = relative_pose_errors(pred.float(), gt.float())
    torch.testing.assert_close(f32.rot_deg, a.rot_deg, atol=1e-4, rtol=0)


def test_zero_baseline_and_failures_count_in_the_denominator():
    gt = random_cameras(4, seed=6)
    gt[1] = gt[0]
    err = relative_pose_errors(gt, gt)
    assert err.degenerate_pairs == 1 and err.trans_deg[0].item() == pytest.approx(90.0)
    cams = random_cameras(5, seed=7)
    pred = cams.clone()
    pred[4, 0, 0] = float("nan")
    err = relative_pose_errors(pred, cams)
    failed = (err.i == 4) | (err.j == 4)
    assert (err.rot_deg[failed] == FAILURE_DEG).all() and failed.sum() == 4
    assert pose_auc(err.rot_deg, err.trans_deg, 30) == pytest.approx(6 / 10)


def test_auc_histogram_definition():
    g = torch.Generator().manual_seed(0)
    m = torch.rand(100_000, generator=g, dtype=torch.float64) * 40
    for t in (3, 5, 15, 30):
        hist = torch.histc(m.clamp(max=t + 1), bins=t + 1, min=0, max=t + 1)[:t] / m.numel()
        assert pose_auc(m, torch.zeros_like(m), t) == pytest.approx(
            float(hist.cumsum(0).mean()), abs=1e-12
        )
    for k in range(5):
        assert pose_auc(torch.full((7,), float(k)), torch.zeros(7), 5) == pytest.approx((5 - k) / 5)
    assert pose_auc(torch.full((3,), 5.0), torch.zeros(3), 5) == pytest.approx(1 / 5)
    assert pose_auc(torch.full((3,), 5.0 + 1e-9, dtype=torch.float64), torch.zeros(3), 5) == 0.0
    half = torch.tensor([0.5] * 10 + [60.0] * 10)
    assert pose_auc(half, torch.zeros(20), 30) == pytest.approx(0.5)


def test_800_views_all_pairs():
    """319,600 pairs in one vectorised call, i < j with i the outer loop (time printed only:
    `python -m avggt_bench.metrics.time_metrics` reports it)."""
    import time

    cams = random_cameras(800, seed=8)
    start = time.perf_counter()
    err = relative_pose_errors(cams, random_cameras(800, seed=9))
    print(f"\nrelative_pose_errors, 800 views: {time.perf_counter() - start:.3f} s")
    assert err.rot_deg.numel() == 319_600 and err.trans_deg.numel() == 319_600
    assert (err.i < err.j).all() and err.i[799] == 1 and err.j[798] == 799


def test_pose_table_percentages_at_every_threshold():
    from avggt_bench.metrics.pose import pose_table

    cams = random_cameras(10, seed=10)
    for order in ("vggt", "pi3"):
        err = relative_pose_errors(cams, cams, order)
        table = pose_table(err.rot_deg, err.trans_deg, (1, 3, 5, 15, 30))
        assert all(v == 100.0 for v in table.values())
        assert set(table) == {f"{m}@{t}" for m in ("rra", "rta", "auc") for t in (1, 3, 5, 15, 30)}
    half = pose_table(torch.tensor([0.5, 40.0]), torch.zeros(2), (2.5,))
    assert half == {"rra@2.5": 50.0, "rta@2.5": 100.0}  # no AUC for a non-integer threshold


def test_per_camera_translation_scale_and_exact_rotation_pair_orders():
    cams = random_cameras(7, seed=11)
    pred = cams.clone()
    g = torch.Generator().manual_seed(12)
    pred[:, :, 3] += 0.3 * torch.randn(7, 3, generator=g, dtype=torch.float64)  # rotations exact
    a = relative_pose_errors(pred, cams, "vggt")
    b = relative_pose_errors(pred, cams, "pi3")
    cam_i = relative_pose_errors(pred, cams, "camera_i")
    torch.testing.assert_close(cam_i.trans_deg, b.trans_deg, atol=1e-9, rtol=0)
    scaled = pred.clone()
    scaled[:, :, 3] *= 42.0  # one positive scale for every predicted translation
    c = relative_pose_errors(scaled, cams, "vggt")
    torch.testing.assert_close(c.trans_deg, a.trans_deg, atol=1e-9, rtol=0)


def test_failures_lower_rra_rta_auc_by_the_exact_fraction():
    from avggt_bench.metrics.pose import pose_table

    cams = random_cameras(6, seed=13)
    pred = cams.clone()
    pred[5] = float("nan")  # 5 of 15 pairs fail
    for order in ("vggt", "pi3", "camera_i", LEGACY):
        err = relative_pose_errors(pred, cams, order)
        table = pose_table(err.rot_deg, err.trans_deg)
        for value in table.values():
            assert value == pytest.approx(100 * 10 / 15)
    pred = cams.clone()
    pred[0] = float("nan")  # the legacy form reads the world from camera 0: every pair fails
    assert (relative_pose_errors(pred, cams, LEGACY).rot_deg == FAILURE_DEG).all()
    for order in ("vggt", "pi3"):
        assert (relative_pose_errors(pred, cams, order).rot_deg == FAILURE_DEG).sum() == 5
    p, f = 45, 15  # P perfect pairs and F failures
    m = torch.cat((torch.zeros(p), torch.full((f,), FAILURE_DEG)))
    assert 100 * pose_auc(m, torch.zeros_like(m), 30) == pytest.approx(100 * p / (p + f))


def official_histogram_auc(m, t):
    """AUC as VGGT's evaluation writes it (test_co3d.py `calculate_auc_np`): np.histogram over
    integer edges 0..T (last bin closed), divided by the number of pairs, mean of the cumsum."""
    hist, _ = np.histogram(m, bins=np.arange(t + 1))
    return float(np.mean(np.cumsum(hist.astype(float) / len(m))))


def test_auc_is_the_official_histogram_and_the_mean_of_fractions():
    rng = np.random.default_rng(0)
    cont = rng.uniform(0, 40, 20_000)
    ties = rng.integers(0, 34, 3_000).astype(float)  # exactly on bin edges, T included
    m = np.concatenate((cont, ties, [FAILURE_DEG, 30.0, 15.0, 5.0, 3.0]))
    # split m between the two error kinds: AUC must use the per-pair max
    rot = np.where(rng.random(m.size) < 0.5, m, 0.0)
    trans = np.where(rot == m, rng.uniform(0, 1, m.size) * m, m)
    for t in (3, 5, 15, 30):
        got = pose_auc(torch.from_numpy(rot), torch.from_numpy(trans), t)
        assert got == pytest.approx(official_histogram_auc(m, t), abs=1e-12)
        fractions = np.mean([(cont < tau).mean() for tau in range(1, t + 1)])
        assert pose_auc(cont, np.zeros_like(cont), t) == pytest.approx(fractions, abs=1e-12)
    with pytest.raises(ValueError, match="integer"):
        pose_auc(cont, cont, 2.5)


def test_hand_computed_three_cameras():
    """Identity rotations, centres (0,0,0), (1,0,0), (0,1,0); predicted camera 2 at (1,1,0).
    Baselines C_j − C_i: GT (1,0,0), (0,1,0), (−1,1,0); predicted (1,0,0), (1,1,0), (0,1,0):
    translation errors 0°, 45°, 45° under both orders (the π³ order only flips the sign)."""

    def cams(centres):
        w2c = torch.zeros(3, 3, 4, dtype=torch.float64)
        w2c[:, :, :3] = torch.eye(3, dtype=torch.float64)
        w2c[:, :, 3] = -torch.tensor(centres, dtype=torch.float64)
        return w2c

    gt = cams([[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    pred = cams([[0, 0, 0], [1, 0, 0], [1, 1, 0]])
    for order in ("vggt", "pi3"):
        rot, trans = relative_pose_errors(pred, gt, order)
        assert rot.max() < 1e-5
        torch.testing.assert_close(
            trans, torch.tensor([0.0, 45.0, 45.0]).double(), atol=1e-5, rtol=0
        )
        # pair (0, 1) passes every threshold, the others only thresholds above 45°
        assert pose_auc(rot, trans, 30) == pytest.approx(1 / 3)
        from avggt_bench.metrics.pose import pose_table

        table = pose_table(rot, trans, (30, 50))
        assert table["rta@30"] == pytest.approx(100 / 3) and table["rta@50"] == 100.0
        assert table["auc@30"] == pytest.approx(100 / 3)


def _four(e):
    m = np.eye(4)
    m[:3, :] = e[:3, :].numpy()
    return m


def test_vggt_order_is_the_current_official_evaluation_written_out():
    """VGGT's `evaluation/test_co3d.py` `se3_to_relative_pose_error`, as it stands since upstream
    commit 4b8be14 "fix a small bug in eval": pairs from `build_pair_index` (torch.combinations,
    i1 < i2 with i1 the outer loop), relative pose `E_i1 · closed_form_inverse_se3(E_i2)` of the
    w2c poses as given (no re-alignment to the first camera), `rotation_angle` (the angle of the
    rotation between the two relative rotations) and `translation_angle` (the angle between the
    relative translations, folded by min(θ, 180° − θ)). Written out per pair here with NumPy
    (rotation angle from the trace), on a prediction in a world of its own (E_0 ≠ I)."""
    gt, pred = random_cameras(6, seed=31), random_cameras(6, seed=32)
    g, p = [_four(e) for e in gt], [_four(e) for e in pred]
    pairs, rot, trans = [], [], []
    for i in range(6):
        for j in range(i + 1, 6):
            rg, rp = g[i] @ np.linalg.inv(g[j]), p[i] @ np.linalg.inv(p[j])
            cos = (np.trace(rg[:3, :3].T @ rp[:3, :3]) - 1) / 2
            rot.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
            tg, tp = rg[:3, 3] / np.linalg.norm(rg[:3, 3]), rp[:3, 3] / np.linalg.norm(rp[:3, 3])
            angle = np.degrees(np.arccos(np.clip(np.dot(tg, tp), -1, 1)))
            trans.append(min(angle, abs(180 - angle)))
            pairs.append((i, j))
    err = relative_pose_errors(pred, gt, "vggt")
    assert list(zip(err.i.tolist(), err.j.tolist(), strict=True)) == pairs
    np.testing.assert_allclose(err.rot_deg.numpy(), rot, atol=1e-5)
    np.testing.assert_allclose(err.trans_deg.numpy(), trans, atol=1e-5)
    legacy = relative_pose_errors(pred, gt, LEGACY)
    assert np.abs(legacy.rot_deg.numpy() - rot).max() > 1.0  # the old form is another metric


def test_legacy_order_is_vggt_evaluation_before_4b8be14_written_out():
    """VGGT's `evaluation/test_co3d.py` before upstream commit 4b8be14: both pose sets
    re-expressed in their first camera (`align_to_first_camera`), then per pair
    `closed_form_inverse_se3(E_i) · E_j`; rotation error from the quaternion dot product,
    translation angle folded to [0°, 90°]."""
    from scipy.spatial.transform import Rotation

    gt, pred = random_cameras(5, seed=21), random_cameras(5, seed=22)
    g = [_four(e) for e in gt]
    g = [e @ np.linalg.inv(g[0]) for e in g]
    p = [_four(e) for e in pred]
    p = [e @ np.linalg.inv(p[0]) for e in p]
    rot, trans = [], []
    for i in range(5):
        for j in range(i + 1, 5):
            rg, rp = np.linalg.inv(g[i]) @ g[j], np.linalg.inv(p[i]) @ p[j]
            qg = Rotation.from_matrix(rg[:3, :3]).as_quat()
            qp = Rotation.from_matrix(rp[:3, :3]).as_quat()
            rot.append(np.degrees(np.arccos(np.clip(2 * np.dot(qg, qp) ** 2 - 1, -1, 1))))
            tg, tp = rg[:3, 3] / np.linalg.norm(rg[:3, 3]), rp[:3, 3] / np.linalg.norm(rp[:3, 3])
            angle = np.degrees(np.arccos(np.clip(abs(np.dot(tg, tp)), 0, 1)))
            trans.append(min(angle, abs(180 - angle)))
    err = relative_pose_errors(pred, gt, LEGACY)
    np.testing.assert_allclose(err.rot_deg.numpy(), rot, atol=1e-5)
    np.testing.assert_allclose(err.trans_deg.numpy(), trans, atol=1e-5)


def test_project_so3_is_the_polar_factor_and_fixes_reflections():
    from scipy.linalg import polar

    g = np.random.default_rng(7)
    rots = random_cameras(5, seed=7)[:, :, :3].numpy() + 0.05 * g.standard_normal((5, 3, 3))
    out = project_so3(rots)
    for k in range(5):
        np.testing.assert_allclose(out[k], polar(rots[k])[0], atol=1e-12, rtol=0)
    mirror = project_so3(np.diag([1.0, 1.0, -1.0]) @ rots[0])
    assert np.linalg.det(mirror) == pytest.approx(1.0)
    np.testing.assert_allclose(mirror.T @ mirror, np.eye(3), atol=1e-12)
    bad = np.full((3, 3), np.nan)
    assert np.isnan(project_so3(np.stack((bad, rots[0])))[0]).all()


def test_non_orthonormal_rotations_score_as_their_nearest_rotation():
    cams = random_cameras(6, seed=4)
    noisy = cams.clone()
    noisy[:, :, :3] += 0.05 * torch.randn(6, 3, 3, generator=torch.Generator().manual_seed(5))
    nearest = noisy.clone()
    nearest[:, :, :3] = torch.from_numpy(project_so3(noisy[:, :, :3].numpy()))
    a, b = relative_pose_errors(noisy, cams), relative_pose_errors(nearest, cams)
    torch.testing.assert_close(a.rot_deg, b.rot_deg, atol=1e-9, rtol=0)
    torch.testing.assert_close(a.trans_deg, b.trans_deg, atol=1e-9, rtol=0)
    assert a.rot_deg.min() > 0.1  # the noise shows in every pair: the check is not vacuous
