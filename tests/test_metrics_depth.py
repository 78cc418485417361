"""Depth metrics and alignments: known answers."""

import math

import numpy as np
import pytest

from avggt_bench.metrics.depth import ALIGNMENTS, depth_errors, fit_alignment


@pytest.fixture
def gt():
    return np.random.default_rng(0).uniform(1.0, 10.0, size=(3, 12, 16))


def zero(out):
    for k in ("abs_rel", "sq_rel", "rmse", "log_rmse"):
        assert out[k] == pytest.approx(0.0, abs=1e-12), k
    for k in ("delta1", "delta2", "delta3"):
        assert out[k] == 1.0


@pytest.mark.parametrize("alignment", ALIGNMENTS)
def test_identity(gt, alignment):
    out = depth_errors(gt, gt, alignment=alignment)
    assert out["status"] == "ok"
    zero(out)


@pytest.mark.parametrize("alignment", ["median", "scale", "scale_shift_l1"])
def test_pure_scale_is_removed(gt, alignment):
    zero(depth_errors(0.37 * gt, gt, alignment=alignment))


def test_scale_and_shift(gt):
    pred = 2.5 * gt - 1.3  # gt = (pred + 1.3) / 2.5
    zero(depth_errors(pred, gt, alignment="scale_shift_l1"))
    zero(depth_errors(pred, gt, alignment="lstsq_scale_shift"))
    assert depth_errors(pred, gt, alignment="median")["abs_rel"] > 1e-3


def test_median_rule():
    p, g = np.array([1.0, 2.0, 4.0]), np.array([3.0, 5.0, 7.0])
    assert fit_alignment(p, g, "median") == (5.0 / 2.0, 0.0)
    p4, g4 = np.array([1.0, 2.0, 4.0, 8.0]), np.array([3.0, 5.0, 7.0, 9.0])
    assert fit_alignment(p4, g4, "median", "lower")[0] == 5.0 / 2.0
    assert fit_alignment(p4, g4, "median", "numpy")[0] == 6.0 / 3.0


def test_masking_and_nonfinite_prediction():
    g = np.array([[[0.0, -1.0, np.nan, 80.0, 2.0, 4.0]]])
    p = np.array([[[9.0, 9.0, 9.0, 9.0, 2.0, 6.0]]])
    out = depth_errors(p, g, alignment="metric", max_depth=70.0)
    assert out["n_valid"] == 2 and out["abs_rel"] == pytest.approx(0.25)
    p_bad = p.copy()
    p_bad[0, 0, 5] = np.nan
    bad = depth_errors(p_bad, g, alignment="metric", max_depth=70.0)
    assert bad["status"] == "nonfinite_prediction" and math.isnan(bad["abs_rel"])
    p_bad_outside = p.copy()
    p_bad_outside[0, 0, 0] = np.nan  # outside the mask: ignored
    assert depth_errors(p_bad_outside, g, alignment="metric")["status"] == "ok"
    none = depth_errors(p, np.zeros_like(g), alignment="metric")
    assert none["status"] == "no_valid_pixels"
    valid = np.zeros(g.shape, dtype=bool)
    valid[0, 0, 4] = True
    assert depth_errors(p, g, valid, alignment="metric")["n_valid"] == 1


def test_strict_thresholds_and_asymmetry():
    g = np.full((1, 1, 4), 4.0)
    assert depth_errors(1.25 * g, g, alignment="metric")["delta1"] == 0.0  # 5 / 4 exactly
    assert depth_errors(1.25 * g, g, alignment="metric")["delta2"] == 1.0
    assert depth_errors(2 * g, g, alignment="metric")["abs_rel"] == 1.0
    assert depth_errors(g / 2, g, alignment="metric")["abs_rel"] == 0.5


def test_weighting_and_per_frame_versus_sequence():
    g = np.ones((2, 2, 5))
    g[1] = 2.0
    valid = np.ones(g.shape, dtype=bool)
    valid[0, :, 3:] = False  # frame 0: 6 valid pixels, frame 1: 10
    p = g.copy()
    p[0] *= 1.5  # AbsRel 0.5 on frame 0
    p[1] *= 1.1  # AbsRel 0.1 on frame 1
    out = depth_errors(p, g, valid, alignment="metric", per="frame")
    assert out["abs_rel"] == pytest.approx((6 * 0.5 + 10 * 0.1) / 16)
    assert [u["n_valid"] for u in out["units"]] == [6, 10]
    seq = np.random.default_rng(1).uniform(1, 5, size=(2, 8, 8))
    pred = seq.copy()
    pred[1] *= 2.0
    zero(depth_errors(pred, seq, alignment="median", per="frame"))
    assert depth_errors(pred, seq, alignment="median", per="sequence")["abs_rel"] > 0.1


def test_clip_after_alignment():
    g = np.array([[[50.0, 60.0, 65.0]]])
    p = np.array([[[50.0, 60.0, 90.0]]])
    out = depth_errors(p, g, alignment="metric", clip_max=70.0)
    assert out["abs_rel"] == pytest.approx((5.0 / 65.0) / 3)


def test_adam_compat_is_deterministic_and_not_the_l1_optimum():
    rng = np.random.default_rng(2)
    g = rng.uniform(1, 3, size=200)
    p = g / 3.0 + 2.0  # exact L1 fit: s = 3, b = −6, far from the median-ratio start
    s1, b1 = fit_alignment(p, g, "scale_shift_l1_adam")
    assert (s1, b1) == fit_alignment(p, g, "scale_shift_l1_adam")
    s2, b2 = fit_alignment(p, g, "scale_shift_l1")
    assert s2 == pytest.approx(3.0, rel=1e-9) and b2 == pytest.approx(-6.0, rel=1e-9)
    assert abs(s1 - s2) > 0.5
