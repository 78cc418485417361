"""Relative pose errors and AUC: known answers (datasets_and_metrics.md E2, E3)."""

import math

import pytest
import torch

from avggt_bench.metrics.pose import FAILURE_DEG, pose_auc, relative_pose_errors
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
    """Same cameras in a world transformed by X' = s Q X + v (A1)."""
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
    torch.testing.assert_close(a.rot_deg, pi3.rot_deg, atol=1e-9, rtol=0)
    assert (a.trans_deg - pi3.trans_deg).abs().max() > 1e-6
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


def test_800_views_is_fast():
    import time

    cams = random_cameras(800, seed=8)
    start = time.perf_counter()
    err = relative_pose_errors(cams, random_cameras(800, seed=9))
    assert err.rot_deg.numel() == 319_600
    assert time.perf_counter() - start < 5.0  # generous bound for shared CI runners
