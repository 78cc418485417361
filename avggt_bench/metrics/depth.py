"""Depth metrics: AbsRel, SqRel, RMSE, logRMSE, δ<1.25^k after a per-frame or per-sequence
scale / scale-and-shift alignment, aggregated by valid pixels.

Maps are `[S, H, W]` (or `[H, W]`) at the ground-truth size; the caller resizes predictions
(bicubic) first. Everything runs in float64 NumPy except the Adam compat fit (torch, float64).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from avggt_bench.metrics.geometry import NO_VALID, NONFINITE, OK, MetricError, as_f64
from avggt_bench.metrics.points import median

ALIGNMENTS = (
    "median",
    "scale",
    "scale_shift_l1",
    "scale_shift_l1_adam",
    "lstsq_scale_shift",
    "metric",
)
UNITS = ("frame", "sequence")
METRIC_KEYS = ("abs_rel", "sq_rel", "rmse", "log_rmse", "delta1", "delta2", "delta3")


def depth_mask(gt: np.ndarray, valid: Any | None = None, max_depth: float | None = None):
    """`(g > 0) ∧ finite(g) ∧ (g < max_depth)` and the loader's `valid` mask when given."""
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(gt) & (gt > 0)
        if max_depth is not None:
            mask &= gt < max_depth
    if valid is not None:
        mask &= np.asarray(as_f64(valid) > 0)
    return mask


def fit_alignment(
    pred: np.ndarray, gt: np.ndarray, method: str, median_mode: str = "numpy"
) -> tuple[float, float]:
    """(s, b) so that s·pred + b ≈ gt on the given (already masked, 1-D) pixels."""
    if method == "metric":
        return 1.0, 0.0
    if method == "median":
        return float(median(gt, median_mode) / median(pred, median_mode)), 0.0
    if method == "scale":  # IRLS L1 scale, 10 iterations (π³ monocular depth)
        s = float(gt.mean() / pred.mean())
        for _ in range(10):
            w = 1.0 / (np.abs(s * pred - gt) + 1e-8)
            s = float((w * pred * gt).sum() / (w * pred * pred).sum())
        return max(s, 1e-3), 0.0
    if method == "lstsq_scale_shift":
        a = np.stack((pred, np.ones_like(pred)), axis=1)
        (s, b), *_ = np.linalg.lstsq(a, gt, rcond=None)
        return float(s), float(b)
    if method == "scale_shift_l1":
        return _l1_scale_shift(pred, gt)
    if method == "scale_shift_l1_adam":
        return _l1_scale_shift_adam(pred, gt, median_mode)
    raise ValueError(f"depth alignment {method!r}; valid: {', '.join(ALIGNMENTS)}")


def _l1_scale_shift(p: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    """Exact least absolute deviations: φ(s) = min_b Σ|g − s·p − b| is convex with b* = median;
    bisect on the sign of its subgradient −Σ sign(r)·p down to the floating-point resolution."""

    def slope(s: float) -> tuple[float, float]:
        r = g - s * p
        b = float(np.median(r))
        return float(-(np.sign(r - b) * p).sum()), b

    s0 = float(np.median(g) / np.median(p)) if np.median(p) != 0 else 1.0
    span = max(abs(s0), 1.0)
    lo, hi = s0 - span, s0 + span
    for _ in range(200):  # widen the bracket until the subgradient changes sign
        if slope(lo)[0] <= 0:
            break
        lo -= 2 * (hi - lo)
    for _ in range(200):
        if slope(hi)[0] >= 0:
            break
        hi += 2 * (hi - lo)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            break
        d, _ = slope(mid)
        if d == 0:
            lo = hi = mid
            break
        if d > 0:
            hi = mid
        else:
            lo = mid
    candidates = [lo, hi]
    cost = [np.abs(g - s * p - np.median(g - s * p)).sum() for s in candidates]
    s = candidates[int(np.argmin(cost))]
    return s, float(np.median(g - s * p))


def _l1_scale_shift_adam(p: np.ndarray, g: np.ndarray, median_mode: str) -> tuple[float, float]:
    """Compat (π³ video depth "scale&shift"): Adam, lr 1e-4, on Σ|s·p + b − g| from
    s = median(g)/median(p), b = 0; at most 1000 steps, stop when the loss moves < 1e-6."""
    import torch

    pt, gt = torch.from_numpy(p), torch.from_numpy(g)
    s0 = float(median(g, median_mode) / median(p, median_mode))
    s = torch.tensor(s0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([s, b], lr=1e-4)
    prev = None
    for _ in range(1000):
        opt.zero_grad()
        loss = (s * pt + b - gt).abs().sum()
        loss.backward()
        opt.step()
        value = float(loss.detach())
        if prev is not None and abs(prev - value) < 1e-6:
            break
        prev = value
    return float(s.detach()), float(b.detach())


def depth_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """AbsRel, SqRel, RMSE, logRMSE, δ_k of aligned 1-D predictions against masked ground truth."""
    diff = pred - gt
    out = {
        "abs_rel": float((np.abs(diff) / gt).mean()),
        "sq_rel": float((diff * diff / gt).mean()),
        "rmse": float(np.sqrt((diff * diff).mean())),
    }
    p = np.maximum(pred, 1e-5)
    out["log_rmse"] = float(np.sqrt(((np.log(p) - np.log(gt)) ** 2).mean()))
    ratio = np.maximum(p / gt, gt / p)
    for k in (1, 2, 3):
        out[f"delta{k}"] = float((ratio < 1.25**k).mean())
    return out


def depth_errors(
    pred: Any,
    gt: Any,
    valid: Any | None = None,
    *,
    alignment: str = "median",
    per: str = "sequence",
    max_depth: float | None = None,
    clip_max: float | None = None,
    median_mode: str = "numpy",
) -> dict[str, Any]:
    """Depth metrics of `pred` against `gt` (`[S, H, W]`, same size), one alignment per frame
    (`per="frame"`, monocular protocols) or one for all frames jointly (`per="sequence"`, video).

    Each unit (frame or sequence) gets its own metrics and valid-pixel count n_u; the returned
    metrics are Σ n_u·M_u / Σ n_u. Also returns `n_valid`, `units` (per-unit s, b, n, metrics),
    `status` (`ok`, `no_valid_pixels`, `nonfinite_prediction`) and `message`.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"depth alignment {alignment!r}; valid: {', '.join(ALIGNMENTS)}")
    if per not in UNITS:
        raise ValueError(f"depth alignment unit {per!r}; valid: {', '.join(UNITS)}")
    p, g = as_f64(pred), as_f64(gt)
    if p.ndim == 2:
        p, g = p[None], g[None]
        valid = None if valid is None else np.asarray(as_f64(valid))[None]
    if p.shape != g.shape:
        return _failed("invalid_input", f"prediction {p.shape} and ground truth {g.shape} differ")
    mask = depth_mask(g, valid, max_depth)
    n_total = int(mask.sum())
    if n_total == 0:
        return _failed(NO_VALID, "no valid ground-truth depth pixel")
    bad = mask & ~np.isfinite(p)
    if bad.any():
        return _failed(NONFINITE, f"{int(bad.sum())} non-finite predicted depths at valid pixels")
    groups = [np.arange(p.shape[0])] if per == "sequence" else [[i] for i in range(p.shape[0])]
    units = []
    for frames in groups:
        m = mask[frames]
        n = int(m.sum())
        unit: dict[str, Any] = {"frames": [int(f) for f in frames], "n_valid": n}
        if n == 0:  # weight 0, recorded
            units.append({**unit, "scale": None, "shift": None, "metrics": None})
            continue
        pv, gv = p[frames][m], g[frames][m]
        s, b = fit_alignment(pv, gv, alignment, median_mode)
        aligned = s * pv + b
        if clip_max is not None:
            aligned = np.minimum(aligned, clip_max)
        units.append({**unit, "scale": s, "shift": b, "metrics": depth_metrics(aligned, gv)})
    used = [u for u in units if u["metrics"] is not None]
    weights = np.array([u["n_valid"] for u in used], dtype=np.float64)
    metrics = {
        k: float((weights * [u["metrics"][k] for u in used]).sum() / weights.sum())
        for k in METRIC_KEYS
    }
    return {**metrics, "n_valid": n_total, "units": units, "status": OK, "message": ""}


def _failed(status: str, message: str) -> dict[str, Any]:
    return {
        **dict.fromkeys(METRIC_KEYS, float("nan")),
        "n_valid": 0,
        "units": [],
        "status": status,
        "message": message,
    }


__all__ = [
    "ALIGNMENTS",
    "METRIC_KEYS",
    "MetricError",
    "depth_errors",
    "depth_mask",
    "depth_metrics",
    "fit_alignment",
]
