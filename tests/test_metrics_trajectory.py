"""Trajectory metrics (evo): known answers, and a cross-check against an independent NumPy
implementation of Umeyama Sim(3) + ATE / ARE / RPE written here from the published formulas."""

import math
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from avggt_bench.metrics.trajectory import trajectory_errors


def random_c2w(n, seed=0, spread=2.0):
    rng = np.random.default_rng(seed)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, :3, :3] = Rotation.random(n, random_state=seed).as_matrix()
    c2w[:, :3, 3] = np.cumsum(rng.normal(scale=spread / 4, size=(n, 3)), axis=0)
    return c2w


def similarity(c2w, s, q, v):
    """The trajectory under a world similarity: positions s·Q·y + v, rotations Q·R."""
    out = c2w.copy()
    out[:, :3, :3] = q @ c2w[:, :3, :3]
    out[:, :3, 3] = s * c2w[:, :3, 3] @ q.T + v
    return out


def perturb(c2w, seed, rot_deg=3.0, trans=0.05):
    rng = np.random.default_rng(seed)
    out = c2w.copy()
    noise = Rotation.from_rotvec(rng.normal(size=(len(c2w), 3)) * math.radians(rot_deg))
    out[:, :3, :3] = noise.as_matrix() @ c2w[:, :3, :3]
    out[:, :3, 3] += rng.normal(scale=trans, size=(len(c2w), 3))
    return out


# ------------------------------------------------------------------- independent NumPy oracle


def oracle(est, ref):
    x, y = est[:, :3, 3], ref[:, :3, 3]
    n = len(x)
    mx, my = x.mean(0), y.mean(0)
    var = sum(float((xi - mx) @ (xi - mx)) for xi in x) / n
    cov = sum(np.outer(yi - my, xi - mx) for xi, yi in zip(x, y)) / n
    u, d, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, 1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    r_a = u @ sign @ vt
    c = np.trace(np.diag(d) @ sign) / var
    t_a = my - c * r_a @ mx
    aligned = est.copy()
    aligned[:, :3, :3] = r_a @ est[:, :3, :3]
    aligned[:, :3, 3] = c * x @ r_a.T + t_a

    def angle(r):
        return math.degrees(math.acos(min(1.0, max(-1.0, (np.trace(r) - 1) / 2))))

    def inv(p):
        out = np.eye(4)
        out[:3, :3] = p[:3, :3].T
        out[:3, 3] = -p[:3, :3].T @ p[:3, 3]
        return out

    ate = math.sqrt(np.mean(np.sum((aligned[:, :3, 3] - y) ** 2, axis=1)))
    are = math.sqrt(np.mean([angle(q[:3, :3].T @ p[:3, :3]) ** 2 for p, q in zip(aligned, ref)]))
    errs = [
        inv(inv(ref[i]) @ ref[i + 1]) @ (inv(aligned[i]) @ aligned[i + 1]) for i in range(n - 1)
    ]
    rpe_t = math.sqrt(np.mean([e[:3, 3] @ e[:3, 3] for e in errs]))
    rpe_r = math.sqrt(np.mean([angle(e[:3, :3]) ** 2 for e in errs]))
    return {"ate": ate, "are": are, "rpe_trans": rpe_t, "rpe_rot": rpe_r, "scale": c}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_independent_numpy_oracle(seed):
    ref = random_c2w(40, seed)
    est = similarity(
        perturb(ref, seed + 10),
        0.37,
        Rotation.random(random_state=seed).as_matrix(),
        np.array([3.0, -1.0, 2.0]),
    )
    out, want = trajectory_errors(est, ref), oracle(est, ref)
    assert out["status"] == "ok"
    for key in ("ate", "are", "rpe_trans", "rpe_rot"):
        assert out[key] == pytest.approx(want[key], rel=1e-9), key
    assert out["alignment"]["scale"] == pytest.approx(want["scale"], rel=1e-9)
    assert out["rpe_pairs"] == 39


def test_exact_similarity_is_removed_and_inverted():
    ref = random_c2w(30, 3)
    q, s, v = Rotation.random(random_state=4).as_matrix(), 7.3, np.array([10.0, -4.0, 2.0])
    out = trajectory_errors(similarity(ref, s, q, v), ref)
    extent = np.ptp(ref[:, :3, 3], axis=0).max()
    assert out["ate"] <= 1e-10 * extent and out["rpe_trans"] <= 1e-10 * extent
    assert out["are"] <= 1e-8 and out["rpe_rot"] <= 1e-8
    al = out["alignment"]
    assert al["scale"] == pytest.approx(1 / s, rel=1e-10)
    np.testing.assert_allclose(al["rotation"], q.T, atol=1e-10)
    np.testing.assert_allclose(al["translation"], -q.T @ v / s, atol=1e-10)


def test_reflection_guard():
    ref = random_c2w(20, 5)
    est = ref.copy()
    est[:, :3, 3] *= np.array([-1.0, 1.0, 1.0])  # mirrored, non-planar positions
    out = trajectory_errors(est, ref)
    assert np.linalg.det(np.array(out["alignment"]["rotation"])) == pytest.approx(1.0)
    assert out["ate"] > 1e-3


def test_no_alignment_oracle_and_rpe_properties():
    ref = random_c2w(25, 6)
    delta = np.random.default_rng(7).normal(scale=0.1, size=(25, 3))
    est = ref.copy()
    est[:, :3, 3] += delta
    out = trajectory_errors(est, ref, align="none")
    assert out["ate"] == pytest.approx(math.sqrt(np.mean(np.sum(delta**2, 1))), rel=1e-12)
    # RPE is unchanged by a global rigid transform of the estimate, even without alignment
    moved = similarity(est, 1.0, Rotation.random(random_state=8).as_matrix(), np.array([5.0, 1, 0]))
    out2 = trajectory_errors(moved, ref, align="none")
    assert out2["rpe_trans"] == pytest.approx(out["rpe_trans"], rel=1e-9)
    assert out2["rpe_rot"] == pytest.approx(out["rpe_rot"], rel=1e-9, abs=1e-9)
    # centres scaled about the origin: RPE-trans = |s − 1|·sqrt(mean ‖trans(A_i)‖²), RPE-rot = 0
    s = 1.7
    scaled = ref.copy()
    scaled[:, :3, 3] *= s
    rel = [np.linalg.inv(ref[i]) @ ref[i + 1] for i in range(24)]
    expected = abs(s - 1) * math.sqrt(np.mean([a[:3, 3] @ a[:3, 3] for a in rel]))
    out3 = trajectory_errors(scaled, ref, align="none")
    assert out3["rpe_trans"] == pytest.approx(expected, rel=1e-9)
    assert out3["rpe_rot"] < 1e-6 and out3["rpe_pairs"] == 24


@pytest.mark.parametrize("case", ["identical", "collinear", "two"])
def test_degenerate_trajectories_give_a_status(case):
    ref = random_c2w(10, 9)
    est = ref.copy()
    if case == "identical":
        est[:, :3, 3] = 1.0
    elif case == "collinear":
        est[:, :3, 3] = np.linspace(0, 1, 10)[:, None] * np.array([1.0, 2.0, 3.0])
    else:
        est, ref = est[:2], ref[:2]
    out = trajectory_errors(est, ref)
    assert out["status"] == "degenerate_alignment", out["message"]
    assert all(math.isnan(out[k]) for k in ("ate", "are", "rpe_trans", "rpe_rot"))


def test_nonfinite_and_mismatched_inputs_give_a_status():
    ref = random_c2w(10, 10)
    est = ref.copy()
    est[3, 0, 3] = np.nan
    assert trajectory_errors(est, ref)["status"] == "nonfinite_prediction"
    assert trajectory_errors(ref[:9], ref)["status"] == "invalid_input"


def test_w2c_compat_and_first_frame_convention():
    ref = random_c2w(15, 11)
    shifted = similarity(ref, 1.0, np.eye(3), np.array([3.0, -2.0, 1.0]))
    assert trajectory_errors(shifted, ref)["ate"] < 1e-9
    assert trajectory_errors(shifted, ref, traj_input="w2c")["ate"] > 1e-3
    first = np.linalg.inv(ref[0])
    rel = first @ ref  # both relative to their first frame: v = 0
    pred = similarity(rel, 2.5, np.eye(3), np.zeros(3))
    assert trajectory_errors(pred, rel)["ate"] < 1e-9
    assert trajectory_errors(pred, rel, traj_input="w2c")["ate"] < 1e-9


def test_sim3_then_origin():
    ref = random_c2w(12, 12)
    q = Rotation.random(random_state=13).as_matrix()
    perfect = similarity(ref, 0.5, q, np.array([1.0, 2.0, 3.0]))
    out = trajectory_errors(perfect, ref, align="sim3_then_origin", return_aligned=True)
    assert out["ate"] < 1e-9
    np.testing.assert_allclose(out["aligned"][0], ref[0], atol=1e-12)
    noisy = perturb(perfect, 14)
    a = trajectory_errors(noisy, ref, align="sim3_then_origin")
    b = trajectory_errors(noisy, ref, align="sim3")
    assert a["rpe_trans"] == pytest.approx(b["rpe_trans"], rel=1e-9)
    assert a["rpe_rot"] == pytest.approx(b["rpe_rot"], rel=1e-9)
    assert a["ate"] != pytest.approx(b["ate"], rel=1e-6)


def test_float32_inputs_are_promoted():
    ref = random_c2w(20, 15)
    est = perturb(ref, 16).astype(np.float32)
    out = trajectory_errors(est, ref.astype(np.float32))
    assert out["status"] == "ok" and np.isfinite(out["ate"])


def test_800_poses_timing():
    ref = random_c2w(800, 17)
    est = perturb(ref, 18)
    start = time.perf_counter()
    out = trajectory_errors(est, ref)
    elapsed = time.perf_counter() - start
    print(f"\ntrajectory_errors, 800 poses (evo): {elapsed:.3f} s")
    assert out["status"] == "ok" and out["rpe_pairs"] == 799
