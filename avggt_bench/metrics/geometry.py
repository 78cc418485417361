"""Float64 geometry shared by the metric modules: SO(3) projection, rigid inverses, Umeyama Sim(3),
and the statuses a metric reports instead of raising (conventions: docs/conventions.md).

Everything here is NumPy float64 and vectorised: the Umeyama fit on 1M correspondences is a few
matrix products, unlike evo's per-point Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from avggt_bench.data import cameras
from avggt_bench.errors import AvggtError

# Scene / metric statuses. Anything but OK is excluded from means and counted by `aggregate`.
OK = "ok"
DEGENERATE = "degenerate_alignment"  # Sim(3) undetermined: < 3 points, identical or collinear
NONFINITE = "nonfinite_prediction"  # NaN / inf where the metric needs finite values
INVALID_INPUT = "invalid_input"  # mismatched frame counts, missing outputs, bad shapes
NO_VALID = "no_valid_pixels"  # nothing left to compare after masks
MISSING_DEPENDENCY = "missing_dependency"  # an optional library (Open3D) is not importable
ERROR = "error"  # unexpected exception (traceback in the message)
SKIPPED = "skipped"  # the loader or protocol skipped the scene
STATUSES = (OK, DEGENERATE, NONFINITE, INVALID_INPUT, NO_VALID, MISSING_DEPENDENCY, ERROR, SKIPPED)

DEGENERATE_SV_RATIO = 1e-12  # second singular value of Σ_xy below this × the first: collinear


class MetricError(AvggtError):
    """A metric cannot be computed for this input; `status` says why (one of STATUSES)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def as_f64(x: Any) -> np.ndarray:
    """Any tensor / array → a new float64 NumPy array (promotes float32 before any maths)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.array(x, dtype=np.float64, copy=True)


def project_so3(rot: np.ndarray) -> np.ndarray:
    """Nearest rotation `U diag(1, 1, det(U Vᵀ)) Vᵀ` of `[..., 3, 3]`; non-finite ones stay."""
    rot = np.asarray(rot, dtype=np.float64)
    out = rot.copy()
    finite = np.isfinite(rot).all(axis=(-1, -2))
    if finite.any():
        u, _, vh = np.linalg.svd(rot[finite])
        fix = np.ones(u.shape[:-1])
        fix[..., 2] = np.linalg.det(u @ vh)
        out[finite] = (u * fix[..., None, :]) @ vh
    return out


def as_poses_4x4(poses: Any) -> np.ndarray:
    """`[S, 3, 4]` or `[S, 4, 4]` → `[S, 4, 4]` float64 with an exact `[0, 0, 0, 1]` last row."""
    p = as_f64(poses)
    if p.ndim != 3 or p.shape[-2:] not in ((3, 4), (4, 4)):
        raise MetricError(INVALID_INPUT, f"poses must be [S, 3, 4] or [S, 4, 4], got {p.shape}")
    return cameras.to_4x4(p)


def rotation_angle_deg(rot: np.ndarray) -> np.ndarray:
    """Geodesic angle of `[..., 3, 3]` rotations in degrees, stable at 0 and 180° (atan2 form)."""
    w = np.stack(
        (
            rot[..., 2, 1] - rot[..., 1, 2],
            rot[..., 0, 2] - rot[..., 2, 0],
            rot[..., 1, 0] - rot[..., 0, 1],
        ),
        axis=-1,
    )
    trace = rot[..., 0, 0] + rot[..., 1, 1] + rot[..., 2, 2]
    return np.degrees(np.arctan2(np.linalg.norm(w, axis=-1), trace - 1.0))


@dataclass
class Sim3:
    """`x ↦ scale · rotation · x + translation` (float64)."""

    scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform `[..., 3]` points."""
        return self.scale * points @ self.rotation.T + self.translation

    def matrix(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.scale * self.rotation
        m[:3, 3] = self.translation
        return m

    def inverse(self) -> Sim3:
        rot_t = self.rotation.T
        return Sim3(1.0 / self.scale, rot_t, -(rot_t @ self.translation) / self.scale)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scale": float(self.scale),
            "rotation": self.rotation.tolist(),
            "translation": self.translation.tolist(),
        }


def umeyama_sim3(src: Any, dst: Any, mask: Any | None = None, with_scale: bool = True) -> Sim3:
    """Least-squares `dst ≈ c·R·src + t` (Umeyama, IEEE TPAMI 13(4), 1991), vectorised float64.

    `src`, `dst`: `[..., 3]` corresponding points; `mask` (same leading shape) selects the
    correspondences. Raises MetricError(DEGENERATE) for < 3 correspondences, zero source variance,
    or a cross-covariance whose second singular value is ≤ 1e-12 × the first (identical or collinear
    points), and MetricError(NONFINITE) for non-finite selected points.
    """
    x, y = as_f64(src).reshape(-1, 3), as_f64(dst).reshape(-1, 3)
    if x.shape != y.shape:
        raise MetricError(INVALID_INPUT, f"Umeyama needs matching shapes, got {x.shape}, {y.shape}")
    if mask is not None:
        keep = np.asarray(as_f64(mask) > 0).reshape(-1)
        x, y = x[keep], y[keep]
    n = x.shape[0]
    if n < 3:
        raise MetricError(DEGENERATE, f"Sim(3) alignment needs >= 3 correspondences, got {n}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise MetricError(NONFINITE, "non-finite points among the alignment correspondences")
    mu_x, mu_y = x.mean(0), y.mean(0)
    xc, yc = x - mu_x, y - mu_y
    var_x = float((xc * xc).sum() / n)
    cov = yc.T @ xc / n
    u, d, vh = np.linalg.svd(cov)
    if var_x <= 0.0 or d[1] <= DEGENERATE_SV_RATIO * d[0]:
        raise MetricError(
            DEGENERATE,
            f"Sim(3) alignment undetermined: points identical or collinear "
            f"(source variance {var_x:.3g}, singular values {d[0]:.3g}, {d[1]:.3g})",
        )
    s = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vh) < 0:
        s[2] = -1.0
    rot = (u * s) @ vh
    scale = float((d * s).sum() / var_x) if with_scale else 1.0
    return Sim3(scale, rot, mu_y - scale * rot @ mu_x)
