"""Analytic ray casting of the procedural scene, one frame at a time, and `render_scene`, which
lays out the scene, renders every view and returns it as a `Scene` with exact ground truth."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from avggt_bench.data.scene import Scene
from avggt_bench.data.synthetic.config import SyntheticConfig
from avggt_bench.data.synthetic.layout import (
    FLOOR_Y,
    NUM_ROOM_FACES,
    PATH_SAMPLES,
    Room,
    SceneObject,
    intrinsics_matrix,
    make_room,
    path_params,
    place_objects,
    trajectory,
)
from avggt_bench.data.synthetic.texture import (
    AMBIENT,
    DIFFUSE,
    LIGHT,
    Texture,
    make_texture,
    surface_colour,
)
from avggt_bench.progress import progress

PROGRESS_MIN_VIEWS = 64
"""A progress bar is shown from this many views on."""

_CHUNK_FRAMES = 16  # progress-bar granularity


@dataclass(frozen=True)
class _Grid:
    xu: torch.Tensor  # [W] (u - cx) / fx
    yv: torch.Tensor  # [H] (v - cy) / fy
    norm2: torch.Tensor  # [H, W] |d_cam|^2 (rotation-invariant)
    fx: float
    fy: float
    cx: float
    cy: float


def _make_grid(k: torch.Tensor, width: int, height: int) -> _Grid:
    fx, fy, cx, cy = (float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]))
    xu = (torch.arange(width, dtype=torch.float64) - cx) / fx
    yv = (torch.arange(height, dtype=torch.float64) - cy) / fy
    norm2 = yv[:, None] ** 2 + xu[None, :] ** 2 + 1.0
    return _Grid(xu, yv, norm2, fx, fy, cx, cy)


def _screen_rect(
    obj: SceneObject, rot: np.ndarray, centre: np.ndarray, grid: _Grid, width: int, height: int
) -> tuple[int, int, int, int] | None:
    """Conservative pixel rectangle (v0, v1, u0, u1) covering the object, or None if unseen."""
    corners = np.stack(
        np.meshgrid(*[(obj.lo[a], obj.hi[a]) for a in range(3)], indexing="ij"), axis=-1
    ).reshape(8, 3)
    cam = (corners - centre) @ rot.T
    z = cam[:, 2]
    if np.all(z <= 0.0):
        return None  # the (convex) bounding box lies entirely behind the camera
    if np.any(z <= 1e-6):
        return 0, height, 0, width
    u = grid.fx * cam[:, 0] / z + grid.cx
    v = grid.fy * cam[:, 1] / z + grid.cy
    u0 = max(0, math.floor(u.min()) - 1)
    u1 = min(width, math.ceil(u.max()) + 2)
    v0 = max(0, math.floor(v.min()) - 1)
    v1 = min(height, math.ceil(v.max()) + 2)
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def _render_frame(
    rot: np.ndarray,
    centre: np.ndarray,
    room: Room,
    objects: list[SceneObject],
    grid: _Grid,
    tex: Texture,
    width: int,
    height: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Ray-cast one view: depth float64 [H, W], surface id [H, W], shade [H, W], ray dirs."""
    r = rot.tolist()
    # World ray directions d_w = R^T d_cam with d_cam = (xu, yv, 1), one [H, W] plane per axis.
    dirs = [(grid.yv[:, None] * r[1][a] + r[2][a]) + grid.xu[None, :] * r[0][a] for a in range(3)]
    inv = [torch.reciprocal(d) for d in dirs]
    o = centre.tolist()
    # Room: exit through the nearest wall; per axis the wall ahead of the ray.
    t_axes = torch.stack(
        [
            torch.maximum((room.hi[a] - o[a]) * inv[a], (room.lo[a] - o[a]) * inv[a])
            for a in range(3)
        ]
    )
    positive = torch.stack([d > 0 for d in dirs])  # [3, H, W]
    t_best, axis = t_axes.min(dim=0)
    face = 2 * axis + torch.gather(positive, 0, axis[None])[0]
    ids = face
    shade_table = tex.table[6, :NUM_ROOM_FACES].to(torch.float64)
    shade = shade_table[face]
    light = LIGHT.tolist()
    for k, obj in enumerate(objects):
        rect = _screen_rect(obj, rot, centre, grid, width, height)
        if rect is None:
            continue
        v0, v1, u0, u1 = rect
        d = [p[v0:v1, u0:u1] for p in dirs]
        tb = t_best[v0:v1, u0:u1]
        if obj.kind == "sphere":
            oc = [o[a] - float(obj.centre[a]) for a in range(3)]
            c0 = oc[0] ** 2 + oc[1] ** 2 + oc[2] ** 2 - obj.radius**2
            b = d[0] * oc[0] + d[1] * oc[1] + d[2] * oc[2]
            disc = b * b - grid.norm2[v0:v1, u0:u1] * c0
            # Near root c0 / (-b + sqrt(disc)): no cancellation (camera outside the sphere).
            t = c0 / (disc.sqrt_() - b)  # NaN on a miss, which fails every comparison below
            hit = (t > 0) & (t < tb)
            ocl = sum(oc[a] * light[a] for a in range(3))
            dl = d[0] * light[0] + d[1] * light[1] + d[2] * light[2]
            lam = ((t * dl + ocl) / obj.radius).clamp_(min=0.0)
            sh = lam * DIFFUSE + AMBIENT
        else:
            tmin = []
            tmax = []
            for a in range(3):
                ia = inv[a][v0:v1, u0:u1]
                t1 = (float(obj.lo[a]) - o[a]) * ia
                t2 = (float(obj.hi[a]) - o[a]) * ia
                tmin.append(torch.minimum(t1, t2))
                tmax.append(torch.maximum(t1, t2))
            t, ax = torch.stack(tmin).max(dim=0)
            t_far = torch.minimum(torch.minimum(tmax[0], tmax[1]), tmax[2])
            hit = (t <= t_far) & (t > 0) & (t < tb)
            pos = torch.gather(positive[:, v0:v1, u0:u1], 0, ax[None])[0]
            sh = shade_table[2 * ax + pos]
        tb.copy_(torch.where(hit, t, tb))
        ids[v0:v1, u0:u1].masked_fill_(hit, NUM_ROOM_FACES + k)
        shade[v0:v1, u0:u1].copy_(torch.where(hit, sh, shade[v0:v1, u0:u1]))
    return t_best, ids, shade, dirs


def _shade_frame(
    t_best: torch.Tensor,
    ids: torch.Tensor,
    shade: torch.Tensor,
    dirs: list[torch.Tensor],
    centre: np.ndarray,
    tex: Texture,
) -> torch.Tensor:
    """uint8 `[H, W, 3]` image of one view from its hits."""
    o = centre.tolist()
    # Hit points: float64 geometry, texture evaluated in float32.
    points = torch.stack([(dirs[a] * t_best + o[a]).view(-1) for a in range(3)])
    colour = surface_colour(points, ids.view(-1), tex)
    colour.mul_(shade.view(1, -1).to(torch.float32)).add_(0.5).clamp_(0.0, 255.0)
    return colour.to(torch.uint8).t().reshape(*t_best.shape, 3)


def render_scene(cfg: SyntheticConfig) -> Scene:
    """Render the procedural scene of `cfg` with exact depth, poses and intrinsics."""
    cfg.validate()
    s_views, width, height = int(cfg.num_views), int(cfg.width), int(cfg.height)
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 0x5EED]))
    room = make_room(rng)
    traj_rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 0x7A]))
    traj_state = traj_rng.bit_generator.state
    # Dense samples of the continuous path (same random parameters as the views).
    dense_s = np.linspace(0.0, 1.0, PATH_SAMPLES)
    dense, _ = trajectory(cfg.trajectory, room, dense_s, traj_rng, rotations=False)
    traj_rng.bit_generator.state = traj_state
    centres, rots = trajectory(cfg.trajectory, room, path_params(cfg.trajectory, s_views), traj_rng)
    path = np.concatenate((dense, centres))
    objects = place_objects(int(cfg.num_objects), room, path, rng)
    tex = make_texture(room, objects, rng)

    k = intrinsics_matrix(width, height, float(cfg.fov_deg))
    grid = _make_grid(k, width, height)
    extrinsics = torch.zeros(s_views, 3, 4, dtype=torch.float64)
    images = torch.empty(s_views, height, width, 3, dtype=torch.uint8)
    depth = torch.empty(s_views, height, width, dtype=torch.float32)
    valid = torch.empty(s_views, height, width, dtype=torch.bool)

    bar = progress(
        total=s_views, desc="rendering synthetic views", unit="view", min_items=PROGRESS_MIN_VIEWS
    )
    try:
        for start in range(0, s_views, _CHUNK_FRAMES):
            stop = min(s_views, start + _CHUNK_FRAMES)
            for i in range(start, stop):
                rot, centre = rots[i], centres[i]
                extrinsics[i, :, :3] = torch.from_numpy(rot)
                extrinsics[i, :, 3] = torch.from_numpy(-rot @ centre)
                t_best, ids, shade, dirs = _render_frame(
                    rot, centre, room, objects, grid, tex, width, height
                )
                depth[i] = t_best
                valid[i] = torch.isfinite(t_best) & (t_best > 0)
                images[i] = _shade_frame(t_best, ids, shade, dirs, centre, tex)
            bar.update(stop - start)
    finally:
        bar.close()

    meta: dict[str, Any] = {
        "config": asdict(cfg),
        "world_frame": f"OpenCV-like, y down (gravity +y), floor at y={FLOOR_Y:.2f}",
        "room": {"min": room.lo.tolist(), "max": room.hi.tolist()},
        "objects": [obj.describe() for obj in objects],
        "camera_centres": centres.tolist(),
        "surface_ids": "0-5 room faces (2*axis + (ray dir > 0)), 6+ objects in order",
    }
    return Scene(
        dataset="synthetic",
        scene_id=f"seed{cfg.seed}-{cfg.trajectory}",
        images=images,
        intrinsics=k.expand(s_views, 3, 3).clone(),
        extrinsics=extrinsics,
        depth=depth,
        valid=valid,
        metric=True,
        native_unit="m",
        meta=meta,
    )
