"""Which model outputs are evaluated, and on which pixel grid.

Turns `Predictions` into float64 NumPy cameras / points / depth, reading only its fields (what
differs between model families, such as the world of the points or the kind of confidence, is a
field set by the model's adapter: see `avggt_bench.models.predictions`), brings the ground truth
to the protocol's comparison grid (`gt_compare`: native, resized to a width, or the network
input grid through the preprocessing transforms), and resizes predicted maps onto it (points
bilinear with antialias, depth bicubic; ground-truth depth nearest).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from avggt_bench.data.cameras import unproject
from avggt_bench.data.scene import Scene
from avggt_bench.metrics.geometry import INVALID_INPUT, MetricError, as_f64, as_poses_4x4

__all__ = [
    "CONF_CUTS",
    "GTGrid",
    "as_f64",
    "check_frames",
    "confident",
    "describe_outputs",
    "gt_on_grid",
    "pred_conf",
    "pred_depth",
    "pred_points",
    "pred_w2c",
    "resize_depth",
    "resize_points",
    "to_first_camera",
    "unproject",
    "width_target",
]
from avggt_bench.models.predictions import Predictions
from avggt_bench.models.preprocess_geometry import ViewTransform

K_RESCALES = ("per_axis", "pi3_max_scale")
POINT_SOURCES = ("point_head", "depth_unproject")


# ------------------------------------------------------------------------------ model outputs


def _first(t: torch.Tensor | None, name: str, batch: int) -> np.ndarray:
    if t is None:
        raise MetricError(INVALID_INPUT, f"the prediction has no {name}")
    return as_f64(t[batch])


def pred_w2c(pred: Predictions, batch: int = 0) -> np.ndarray:
    """Predicted world-to-camera `[S, 4, 4]` in float64 (the adapters decode it in float64:
    VGGT's camera head, π³'s closed-form inverse of its camera-to-world poses)."""
    return as_poses_4x4(_first(pred.extrinsics, "extrinsics", batch))


def pred_depth(pred: Predictions, batch: int = 0) -> np.ndarray:
    """`[S, H, W]` z-depth in the camera (VGGT's depth head, π³'s local points' z)."""
    return _first(pred.depth, "depth", batch)[..., 0]


def pred_conf(pred: Predictions, batch: int = 0) -> np.ndarray:
    """Confidence of the depth map `[S, H, W]`, of the kind `pred.conf_kind` says."""
    return _first(pred.depth_conf, "depth_conf", batch)


# Confidence cut of the ScanNet Chamfer cloud when the preset sets none, per kind of confidence:
# (threshold, inclusive). VGGT-style `1 + exp(x)` keeps conf >= 3, a sigmoid probability
# keeps conf > 0.1 (π³'s own masking).
CONF_CUTS = {"exp_plus_one": (3.0, True), "sigmoid": (0.1, False)}


def confident(pred: Predictions, threshold: float | None = None, batch: int = 0) -> np.ndarray:
    """Pixels `[S, H, W]` above the confidence cut: `threshold` or the default of the
    prediction's kind of confidence, compared as `CONF_CUTS` says for that kind."""
    default, inclusive = CONF_CUTS[pred.conf_kind]
    tau = default if threshold is None else float(threshold)
    conf = pred_conf(pred, batch)
    return conf >= tau if inclusive else conf > tau


def to_first_camera(points: np.ndarray, w2c0: np.ndarray) -> np.ndarray:
    """`X_c0 = R_0·X + t_0`: points re-expressed in (predicted) camera 0."""
    return points @ w2c0[:3, :3].T + w2c0[:3, 3]


def pred_points(
    pred: Predictions, source: str = "point_head", frame: str = "world", batch: int = 0
) -> np.ndarray:
    """Predicted points `[S, H, W, 3]` at the network grid.

    source: `point_head` (`world_points`) or `depth_unproject` (the depth map unprojected with
    the predicted K and w2c; `world_points` themselves when `pred.world_points_from_depth`, as
    for π³, whose points are its camera-frame points moved by its cameras). frame: `world` (the
    model's own world) or `first_camera` (re-expressed in predicted camera 0 unless the points
    already live there: the point head's when `pred.points_frame` is `first_camera`).
    """
    if source not in POINT_SOURCES:
        raise MetricError(INVALID_INPUT, f"points_source {source!r}; valid: {POINT_SOURCES}")
    if source == "point_head" or pred.world_points_from_depth:
        pts = _first(pred.world_points, "world_points", batch)
    else:
        if pred.intrinsics is None:
            raise MetricError(INVALID_INPUT, "depth_unproject needs predicted intrinsics")
        pts = unproject(
            _first(pred.intrinsics, "intrinsics", batch),
            pred_w2c(pred, batch),
            pred_depth(pred, batch),
        )
    # the cameras' world is re-expressed in camera 0 even for a first-camera model: its
    # predicted camera 0 is close to, not exactly, the identity
    in_first = source == "point_head" and pred.points_frame == "first_camera"
    if frame == "first_camera" and not in_first:
        pts = to_first_camera(pts, pred_w2c(pred, batch)[0])
    return pts


# ---------------------------------------------------------------------------- resizing


def resize_points(points: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear, antialiased, align_corners=False (π³'s resize of predicted point maps)."""
    if points.shape[1:3] == tuple(hw):
        return points
    t = torch.from_numpy(np.ascontiguousarray(points)).permute(0, 3, 1, 2)
    out = F.interpolate(t, size=tuple(hw), mode="bilinear", align_corners=False, antialias=True)
    return out.permute(0, 2, 3, 1).numpy()


def resize_depth(depth: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bicubic, align_corners=False (depth protocols' resize of predicted depth)."""
    if depth.shape[1:3] == tuple(hw):
        return depth
    t = torch.from_numpy(np.ascontiguousarray(depth))[:, None]
    return F.interpolate(t, size=tuple(hw), mode="bicubic", align_corners=False)[:, 0].numpy()


def _nearest_index(n_out: int, scale: float, offset: int, n_src: int, n_resized: int):
    """Source index (and validity) of output pixels under resize-by-`scale`, then crop/pad
    `offset` (output = resized − offset), with centre-aligned nearest neighbour."""
    pos = np.arange(n_out) + offset  # position in the resized image
    inside = (pos >= 0) & (pos < n_resized)
    src = np.clip(np.floor((pos + 0.5) / scale).astype(np.int64), 0, n_src - 1)
    return src, inside


@dataclass
class GTGrid:
    """Ground truth on the comparison grid: depth `[S, H, W]` (0 invalid), valid, K, w2c 4×4."""

    depth: np.ndarray
    valid: np.ndarray
    K: np.ndarray
    w2c: np.ndarray

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.depth.shape[1]), int(self.depth.shape[2])

    def points(self) -> np.ndarray:
        return unproject(self.K, self.w2c, self.depth)


def _rescale_k(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    out = K.copy()
    out[:, 0, 0], out[:, 0, 1] = sx * K[:, 0, 0], sx * K[:, 0, 1]
    out[:, 1, 1] = sy * K[:, 1, 1]
    out[:, 0, 2] = sx * (K[:, 0, 2] + 0.5) - 0.5
    out[:, 1, 2] = sy * (K[:, 1, 2] + 0.5) - 0.5
    return out


def width_target(h: int, w: int, width: int, patch: int = 14) -> tuple[int, int]:
    """π³ evaluation target: width `width`, height round(H·width/W/14)·14 (Python round)."""
    return int(round(h * width / w / patch) * patch), width


def gt_on_grid(
    scene: Scene,
    gt_compare: str = "gt_native",
    transforms: list[ViewTransform] | None = None,
    k_rescale: str = "per_axis",
    input_hw: tuple[int, int] | None = None,
) -> GTGrid:
    """The scene's ground truth on the protocol grid.

    gt_compare: `gt_native` (as stored), `gt_resized_w<N>` (e.g. `gt_resized_w518`: nearest
    resize to width N, height rounded to a multiple of 14, K rescaled per `k_rescale`), or `input`
    (the network input grid: each view's preprocessing resize/crop/pad, padding invalid; without
    `transforms`, allowed only when `input_hw` equals the stored size, i.e. no preprocessing).
    """
    if scene.depth is None or scene.intrinsics is None or scene.extrinsics is None:
        raise MetricError(INVALID_INPUT, "the scene has no ground-truth depth, intrinsics or poses")
    if k_rescale not in K_RESCALES:
        raise MetricError(INVALID_INPUT, f"k_rescale {k_rescale!r}; valid: {K_RESCALES}")
    depth = as_f64(scene.depth)
    valid = np.isfinite(depth) & (depth > 0)
    if scene.valid is not None:
        valid &= scene.valid.cpu().numpy().astype(bool)
    K, w2c = as_f64(scene.intrinsics), as_poses_4x4(scene.extrinsics)
    s, h, w = depth.shape
    if gt_compare == "gt_native":
        return GTGrid(np.where(valid, depth, 0.0), valid, K, w2c)
    match = re.fullmatch(r"gt_resized_w(\d+)", gt_compare)
    if match:
        out_h, out_w = width_target(h, w, int(match.group(1)))
        sx, sy = out_w / w, out_h / h
        if k_rescale == "pi3_max_scale":
            sx = sy = max(sx, sy)
        cols, _ = _nearest_index(out_w, out_w / w, 0, w, out_w)
        rows, _ = _nearest_index(out_h, out_h / h, 0, h, out_h)
        d, m = depth[:, rows][:, :, cols], valid[:, rows][:, :, cols]
        return GTGrid(np.where(m, d, 0.0), m, _rescale_k(K, sx, sy), w2c)
    no_preprocessing = input_hw is not None and tuple(input_hw) == (h, w)
    if gt_compare == "input" and transforms is None and no_preprocessing:
        return GTGrid(np.where(valid, depth, 0.0), valid, K, w2c)
    if gt_compare == "input":
        if transforms is None or len(transforms) != s:
            got = "none" if transforms is None else len(transforms)
            raise MetricError(
                INVALID_INPUT,
                f"gt_compare=input needs one preprocessing transform per view ({s}), got {got}",
            )
        ds, ms, ks = [], [], []
        for i, tf in enumerate(transforms):
            (rh, rw), (oy, ox) = tf.resized_hw, tf.crop_offset_yx
            top, _, left, _ = tf.pad
            cols, in_c = _nearest_index(tf.out_hw[1], rw / w, ox - left, w, rw)
            rows, in_r = _nearest_index(tf.out_hw[0], rh / h, oy - top, h, rh)
            inside = in_r[:, None] & in_c[None, :]
            x0, y0, x1, y1 = tf.content_box_xyxy
            box = np.zeros(tf.out_hw, dtype=bool)
            box[y0:y1, x0:x1] = True
            m = valid[i][rows][:, cols] & inside & box
            ds.append(np.where(m, depth[i][rows][:, cols], 0.0))
            ms.append(m)
            ks.append(as_f64(tf.apply_to_intrinsics(torch.from_numpy(K[i]))))
        return GTGrid(np.stack(ds), np.stack(ms), np.stack(ks), w2c)
    raise MetricError(
        INVALID_INPUT,
        f"gt_compare {gt_compare!r}; valid: gt_native, gt_resized_w<width>, input",
    )


def check_frames(pred: Predictions, scene: Scene, batch: int = 0) -> None:
    """Raise MetricError(invalid_input) when prediction and ground truth disagree in frames."""
    n_pred = int(pred.extrinsics.shape[1]) if pred.extrinsics is not None else -1
    if n_pred != scene.num_views:
        raise MetricError(
            INVALID_INPUT,
            f"{n_pred} predicted frames for {scene.num_views} ground-truth frames "
            f"(scene {scene.dataset}/{scene.scene_id})",
        )
    if batch >= int(pred.extrinsics.shape[0]):
        raise MetricError(INVALID_INPUT, f"batch index {batch} out of range")


def describe_outputs(pred: Predictions) -> dict[str, Any]:
    """Which model outputs were evaluated, for the record (as the model's adapter names them)."""
    return dict(pred.sources)
