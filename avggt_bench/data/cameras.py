"""Camera conventions: every native format converted to the canonical one (docs/conventions.md).

Canonical: OpenCV camera axes (+x right, +y down, +z forward); extrinsics are world-to-camera
`[R | t]` (float64, `x_cam = R·X_w + t`); intrinsics are pixel K for the stored image size with
the centre of pixel (u, v) at the continuous coordinates (u, v). Every function here works on
NumPy float64 arrays (leading batch dimensions allowed where noted) and is pure.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "OPENGL_TO_OPENCV",
    "PYTORCH3D_TO_OPENCV",
    "co3d_intrinsics",
    "colmap_intrinsics",
    "crop_intrinsics",
    "intrinsics",
    "opengl_c2w_to_opencv",
    "pose_problem",
    "project",
    "pytorch3d_to_opencv",
    "quat_to_rotmat",
    "resize_intrinsics",
    "rigid_inverse",
    "rotation_deviation",
    "rotation_problem",
    "similarity_extrinsics",
    "to_4x4",
    "unproject",
]

PYTORCH3D_TO_OPENCV = np.diag([-1.0, -1.0, 1.0])
"""D = diag(-1, -1, 1): PyTorch3D view axes (+x left, +y up) → OpenCV (+x right, +y down)."""

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
"""Right-multiplied onto an OpenGL c2w (+y up, +z backward) it gives the OpenCV c2w."""

ROTATION_TOL = 1e-2
"""max|RᵀR − I| above which a stored rotation is declared `bad_rotation`.

Real dataset poses are only approximately orthonormal: 7-Scenes `stairs/seq-01` stores columns of
length ≈ 0.99994 (max|RᵀR − I| ≈ 1.5e-4), ScanNet six-decimal text ≈ 1e-6; the upstream loaders
use such poses as they are. Only what is clearly not a rotation (a scale of > 0.5 %, a mirror,
non-finite entries) is rejected; the worst accepted deviation of a scene is recorded
(`Scene.max_rotation_deviation`), and the metrics project onto SO(3) where they need a proper
rotation (`metrics/geometry.py` `project_so3`).
"""

K_RESCALE_MODES = ("per_axis", "pi3_max_scale")


def to_4x4(m: np.ndarray) -> np.ndarray:
    """`[..., 3, 4]` or `[..., 4, 4]` → `[..., 4, 4]` float64 with last row exactly [0, 0, 0, 1]."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape[-2:] not in ((3, 4), (4, 4)):
        raise ValueError(f"expected a [..., 3, 4] or [..., 4, 4] pose, got {m.shape}")
    out = np.zeros((*m.shape[:-2], 4, 4), dtype=np.float64)
    out[..., :3, :] = m[..., :3, :]
    out[..., 3, 3] = 1.0
    return out


def rigid_inverse(m: np.ndarray) -> np.ndarray:
    """Closed-form inverse `[Rᵀ | −Rᵀt]` of rigid `[..., 3, 4]` / `[..., 4, 4]` (same shape out)."""
    m = np.asarray(m, dtype=np.float64)
    rot, t = m[..., :3, :3], m[..., :3, 3:]
    rot_t = np.swapaxes(rot, -1, -2)
    top = np.concatenate((rot_t, -rot_t @ t), axis=-1)
    return top if m.shape[-2] == 3 else to_4x4(top)


def rotation_deviation(rot: np.ndarray) -> float:
    """max(|RᵀR − I|, |RRᵀ − I|) over the entries of `[..., 3, 3]` (NaN if any is non-finite).

    Both products are checked so the value does not depend on whether the file stored the
    camera-to-world rotation or its transpose.
    """
    rot = np.asarray(rot, dtype=np.float64)
    if not np.isfinite(rot).all():
        return float("nan")
    eye = np.eye(3)
    cols = np.abs(np.swapaxes(rot, -1, -2) @ rot - eye).max()
    rows = np.abs(rot @ np.swapaxes(rot, -1, -2) - eye).max()
    return float(max(cols, rows))


def rotation_problem(rot: np.ndarray, tol: float = ROTATION_TOL) -> str | None:
    """None if `rot` is a rotation (max|RᵀR − I| ≤ tol and det R > 0), else `"bad_rotation"`
    (`nan_pose` / `inf_pose` for non-finite entries)."""
    rot = np.asarray(rot, dtype=np.float64)
    if not np.isfinite(rot).all():
        return "nan_pose" if np.isnan(rot).any() else "inf_pose"
    err = np.abs(rot.T @ rot - np.eye(3)).max()
    return None if err <= tol and np.linalg.det(rot) > 0 else "bad_rotation"


def pose_problem(pose: np.ndarray, tol: float = ROTATION_TOL) -> str | None:
    """Why a `[3, 4]` / `[4, 4]` pose is unusable (`nan_pose`, `inf_pose`, `bad_rotation`) or None.

    NaN is reported before ±inf (a block with both is a `nan_pose`).
    """
    pose = np.asarray(pose, dtype=np.float64)
    if np.isnan(pose).any():
        return "nan_pose"
    if not np.isfinite(pose).all():
        return "inf_pose"
    return rotation_problem(pose[:3, :3], tol)


def quat_to_rotmat(q: np.ndarray, order: str) -> np.ndarray:
    """Hamilton quaternion(s) `[..., 4]` → rotation `[..., 3, 3]`; `order` is "wxyz" or "xyzw".

    Non-unit quaternions are normalised first; q and −q give the same matrix.
    """
    q = np.asarray(q, dtype=np.float64)
    if order == "wxyz":
        w, x, y, z = np.moveaxis(q, -1, 0)
    elif order == "xyzw":
        x, y, z, w = np.moveaxis(q, -1, 0)
    else:
        raise ValueError(f"quaternion order must be 'wxyz' or 'xyzw', got {order!r}")
    n = np.sqrt(w * w + x * x + y * y + z * z)
    with np.errstate(invalid="ignore", divide="ignore"):
        w, x, y, z = w / n, x / n, y / n, z / n
    rot = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )
    return rot


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """Pinhole K (float64 [3, 3]), zero skew."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


# --------------------------------------------------------------------------- native conventions


def pytorch3d_to_opencv(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """PyTorch3D `R`, `T` (row vectors: X_view = X_w·R + T, +x left, +y up) → OpenCV w2c [3, 4].

    `R_cv = D·Rᵀ`, `t_cv = D·T` with D = diag(−1, −1, 1); the world frame is unchanged.
    """
    rot = np.asarray(rot, dtype=np.float64).reshape(3, 3)
    trans = np.asarray(trans, dtype=np.float64).reshape(3)
    d = PYTORCH3D_TO_OPENCV
    return np.concatenate((d @ rot.T, (d @ trans)[:, None]), axis=1)


def co3d_intrinsics(
    focal: np.ndarray, principal: np.ndarray, hw: tuple[int, int], fmt: str = "ndc_isotropic"
) -> np.ndarray:
    """CO3D NDC focal length / principal point → pixel K for an image of size `hw` = (H, W).

    `ndc_isotropic` (v2): s = min(H, W)/2, fx = f_x·s, cx = W/2 − p_x·s (same for y).
    `ndc_norm_image_bounds` (v1): per-axis half sizes W/2 and H/2.
    """
    h, w = float(hw[0]), float(hw[1])
    fx, fy = (float(v) for v in np.asarray(focal, dtype=np.float64).reshape(2))
    px, py = (float(v) for v in np.asarray(principal, dtype=np.float64).reshape(2))
    if fmt == "ndc_isotropic":
        sx = sy = min(h, w) / 2.0
    elif fmt == "ndc_norm_image_bounds":
        sx, sy = w / 2.0, h / 2.0
    else:
        raise ValueError(
            f"unknown CO3D intrinsics_format {fmt!r}; expected ndc_isotropic or "
            "ndc_norm_image_bounds"
        )
    return intrinsics(fx * sx, fy * sy, w / 2.0 - px * sx, h / 2.0 - py * sy)


def opengl_c2w_to_opencv(c2w_gl: np.ndarray) -> np.ndarray:
    """OpenGL c2w (+y up, +z backward) `[..., 4, 4]` → OpenCV c2w: negate rotation columns 1, 2."""
    return to_4x4(c2w_gl) @ OPENGL_TO_OPENCV


def colmap_intrinsics(
    fx: float, fy: float, cx: float, cy: float, half_pixel: str = "shift"
) -> np.ndarray:
    """COLMAP calibration (top-left pixel centre at (0.5, 0.5)) → canonical K.

    `half_pixel="shift"` subtracts 0.5 from cx, cy; `"ignore"` keeps the raw values (the
    compat switch `colmap_half_pixel: ignore`, as π³'s ETH3D preparation does).
    """
    if half_pixel == "shift":
        return intrinsics(fx, fy, cx - 0.5, cy - 0.5)
    if half_pixel == "ignore":
        return intrinsics(fx, fy, cx, cy)
    raise ValueError(f"colmap_half_pixel must be 'shift' or 'ignore', got {half_pixel!r}")


# --------------------------------------------------------------------------- image-grid rules


def resize_intrinsics(
    k: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int], mode: str = "per_axis"
) -> np.ndarray:
    """K of an image resized from `src_hw` to `dst_hw` (both (H, W)); `[..., 3, 3]` accepted.

    `per_axis`: sx = W'/W, sy = H'/H, f' = s·f, c' = s·(c + 0.5) − 0.5 per axis
    (pixel edges scale, pixel centres sit half a pixel inside them).
    `pi3_max_scale`: both axes use s = max(sx, sy) (π³'s point-map compat, same half-pixel rule).
    """
    k = np.asarray(k, dtype=np.float64)
    sx = dst_hw[1] / src_hw[1]
    sy = dst_hw[0] / src_hw[0]
    if mode == "pi3_max_scale":
        sx = sy = max(sx, sy)
    elif mode != "per_axis":
        raise ValueError(f"k_rescale must be one of {K_RESCALE_MODES}, got {mode!r}")
    out = k.copy()
    out[..., 0, 0] = sx * k[..., 0, 0]
    out[..., 0, 1] = sx * k[..., 0, 1]
    out[..., 1, 1] = sy * k[..., 1, 1]
    out[..., 0, 2] = sx * (k[..., 0, 2] + 0.5) - 0.5
    out[..., 1, 2] = sy * (k[..., 1, 2] + 0.5) - 0.5
    return out


def crop_intrinsics(k: np.ndarray, ox: float, oy: float) -> np.ndarray:
    """K after cropping with top-left offset (ox, oy): the principal point moves, f does not."""
    out = np.array(k, dtype=np.float64, copy=True)
    out[..., 0, 2] -= ox
    out[..., 1, 2] -= oy
    return out


# --------------------------------------------------------------------------- projection


def project(k: np.ndarray, w2c: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points `[N, 3]` → (pixels `[N, 2]`, z `[N]`) through one canonical camera."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    w2c = np.asarray(w2c, dtype=np.float64)
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    k = np.asarray(k, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack((k[0, 0] * cam[:, 0] / z + k[0, 2], k[1, 1] * cam[:, 1] / z + k[1, 2]), -1)
    return uv, z


def unproject(k: np.ndarray, w2c: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """z-depth `[..., H, W]` → world points `[..., H, W, 3]` float64 (pixel centres at
    integers); K `[..., 3, 3]` and world-to-camera `[..., 3, 4]` / `[..., 4, 4]` share leading
    dims."""
    depth = np.asarray(depth, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    w2c = np.asarray(w2c, dtype=np.float64)
    h, w = depth.shape[-2:]
    u = np.arange(w, dtype=np.float64)[None, :]
    v = np.arange(h, dtype=np.float64)[:, None]
    fx, fy = k[..., 0, 0, None, None], k[..., 1, 1, None, None]
    cx, cy = k[..., 0, 2, None, None], k[..., 1, 2, None, None]
    cam = np.stack(((u - cx) * depth / fx, (v - cy) * depth / fy, depth), axis=-1)
    rot, t = w2c[..., :3, :3], w2c[..., :3, 3]
    return np.einsum("...hwj,...jk->...hwk", cam - t[..., None, None, :], rot)  # Rᵀ(X − t)


def similarity_extrinsics(w2c: np.ndarray, s: float, q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Extrinsics after the world moves by X' = s·Q·X + v: `[R·Qᵀ | s·t − R·Qᵀ·v]`."""
    w2c = np.asarray(w2c, dtype=np.float64)
    rot, t = w2c[..., :3, :3], w2c[..., :3, 3]
    q = np.asarray(q, dtype=np.float64)
    rq = rot @ q.T
    return np.concatenate((rq, (s * t - rq @ np.asarray(v, dtype=np.float64))[..., None]), -1)


def fov_focal(size: float, fov_deg: float) -> float:
    """Focal length in pixels for a field of view across `size` pixels: (size/2)/tan(fov/2)."""
    return (size / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
