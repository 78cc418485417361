"""`Predictions` built from a scene's exact ground truth, with the fields VGGT or π³ set, for
the ground-truth oracle (`model=ground_truth`), known-answer tests of the metric path and the
metric timing tool.

The prediction lives in a similarity-transformed world `X' = s·Q·X + v` (a reconstruction is
defined up to a similarity): VGGT-style outputs use the first camera's frame scaled by s (Q, v
from camera 0, as VGGT predicts), π³-style outputs any given (s, Q, v). Cameras, depth and points
are mutually consistent.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from avggt_bench.data.cameras import unproject
from avggt_bench.data.scene import Scene
from avggt_bench.metrics.geometry import as_f64, as_poses_4x4
from avggt_bench.models.predictions import Predictions


def predictions_from_scene(
    scene: Scene,
    family: str = "vggt",
    *,
    scale: float = 1.0,
    rotation: np.ndarray | None = None,
    translation: np.ndarray | None = None,
    depth: np.ndarray | None = None,
    conf: float = 5.0,
    dtype: torch.dtype = torch.float64,
) -> Predictions:
    """Ground truth re-expressed as a model output (batch of one).

    family `vggt`: world = camera 0 scaled by `scale`; `pi3`: world = `scale·rotation·X +
    translation` (defaults identity). `depth` replaces the ground-truth z-depth `[S, H, W]`
    (metres, before scaling) to inject known depth / point errors; the cameras stay exact. A scene
    without depth gets unit depth.
    Confidences are constant: `conf` (VGGT style) or its sigmoid (π³ style). π³-style intrinsics
    are the exact ones (the real π³ adapter estimates them from its local points).
    """
    w2c = as_poses_4x4(scene.extrinsics)
    if family == "vggt":
        q, v = w2c[0, :3, :3], scale * w2c[0, :3, 3]
    elif family == "pi3":
        q = np.eye(3) if rotation is None else np.asarray(rotation, dtype=np.float64)
        v = np.zeros(3) if translation is None else np.asarray(translation, dtype=np.float64)
    else:
        raise ValueError(f"family {family!r}; valid: vggt, pi3")
    if depth is not None:
        d = np.asarray(depth, dtype=np.float64)
    elif scene.depth is not None:
        d = as_f64(scene.depth)
    else:  # a pose-only scene (no depth loaded): unit depth so that every map exists
        d = np.ones((scene.num_views, *scene.image_hw))
    K = as_f64(scene.intrinsics)
    new = w2c.copy()  # E' = [R Qᵀ | s t − R Qᵀ v]
    new[:, :3, :3] = w2c[:, :3, :3] @ q.T
    new[:, :3, 3] = scale * w2c[:, :3, 3] - (new[:, :3, :3] @ v)
    world = unproject(K, w2c, d) @ q.T * scale + v
    s_views, h, w = d.shape
    local = np.einsum("shwj,skj->shwk", world, new[:, :3, :3]) + new[:, None, None, :3, 3]

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(x)).to(dtype)[None]  # a copy per tensor

    extrinsics = torch.from_numpy(new[:, :3, :]).double()[None]
    conf_map = torch.full((1, s_views, h, w), float(conf), dtype=dtype)
    pi3 = family == "pi3"
    conf_map = torch.sigmoid(conf_map) if pi3 else conf_map
    return Predictions(
        extrinsics=extrinsics,
        intrinsics=torch.from_numpy(K).double()[None],
        depth=t(local[..., 2:3]),
        depth_conf=conf_map,
        world_points=t(world),
        world_points_conf=conf_map,
        image_hw=(h, w),
        points_frame="arbitrary" if pi3 else "first_camera",
        conf_kind="sigmoid" if pi3 else "exp_plus_one",
        world_points_from_depth=pi3,
        sources={"family": family, **{k: "ground_truth" for k in ("pose", "points", "depth")}},
    )


def noisy_cameras(
    w2c: np.ndarray, *, rotation_deg: float = 0.0, centre_sigma: float = 0.0, seed: int = 0
) -> np.ndarray:
    """World-to-camera `[S, 3|4, 4]` → `[S, 4, 4]` with noise of a known size: every camera turned
    by exactly `rotation_deg` about a random axis through its centre (`R' = R_noise·R`), and its
    centre moved by isotropic Gaussian noise of standard deviation `centre_sigma` per axis."""
    rng = np.random.default_rng(seed)
    out = as_poses_4x4(w2c)
    n = out.shape[0]
    rot, t = out[:, :3, :3], out[:, :3, 3]
    centres = -np.einsum("sji,sj->si", rot, t) + centre_sigma * rng.normal(size=(n, 3))
    if rotation_deg:
        axis = rng.normal(size=(n, 3))
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        a = np.radians(rotation_deg)
        k = np.zeros((n, 3, 3))  # Rodrigues: I + sin(a)·K + (1 − cos(a))·K²
        k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
        k -= np.swapaxes(k, 1, 2)
        turn = np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)
        rot = turn @ rot
    out[:, :3, :3] = rot
    out[:, :3, 3] = -np.einsum("sij,sj->si", rot, centres)
    return out


def noisy_predictions(
    scene: Scene,
    family: str = "vggt",
    *,
    rotation_deg: float = 0.0,
    centre_sigma: float = 0.0,
    depth_sigma: float = 0.0,
    seed: int = 0,
    **kwargs,
) -> Predictions:
    """`predictions_from_scene` of a perturbed copy of the ground truth: cameras per
    `noisy_cameras`, z-depth multiplied by `max(1 + depth_sigma·N(0, 1), 1e-3)` per pixel. Points
    are unprojected from the noisy depth with the noisy cameras, so the outputs stay mutually
    consistent, as a model's would be. `kwargs` go to `predictions_from_scene`."""
    w2c = noisy_cameras(
        scene.extrinsics, rotation_deg=rotation_deg, centre_sigma=centre_sigma, seed=seed
    )
    depth = kwargs.pop("depth", None)
    if depth is None and scene.depth is not None and depth_sigma:
        noise = np.random.default_rng(seed + 1).normal(size=tuple(scene.depth.shape))
        depth = as_f64(scene.depth) * np.maximum(1.0 + depth_sigma * noise, 1e-3)
    noisy = replace(scene, extrinsics=torch.from_numpy(w2c[:, :3, :].copy()))
    return predictions_from_scene(noisy, family, depth=depth, **kwargs)
