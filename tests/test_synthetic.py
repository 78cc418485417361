"""Procedural synthetic scene: shapes, determinism, exact geometry, view-independent texture."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from avggt_bench.data.cameras import project, unproject
from avggt_bench.data.scene import Scene
from avggt_bench.data.synthetic import (
    MAX_OBJECTS,
    TRAJECTORIES,
    SyntheticConfig,
    intrinsics_matrix,
    layout,
    render_scene,
)
from avggt_bench.errors import ConfigError

SMALL = {"num_views": 8, "width": 112, "height": 84}


@pytest.fixture(scope="module", params=TRAJECTORIES)
def small_scene(request) -> Scene:
    return render_scene(SyntheticConfig(trajectory=request.param, **SMALL))


@pytest.fixture(scope="module", params=TRAJECTORIES)
def dense_scene(request) -> Scene:
    """Closer views (24 around the orbit / along the walk) for two-view comparisons."""
    return render_scene(
        SyntheticConfig(trajectory=request.param, num_views=24, width=112, height=84)
    )


def _pixel_grid(h: int, w: int) -> torch.Tensor:
    v, u = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    return torch.stack((u, v), dim=-1)


def _reproject(scene: Scene, i: int, j: int) -> tuple[torch.Tensor, ...]:
    """View i's pixels in view j: (visible mask, projected z, uv) with nearest-pixel lookups."""
    h, w = scene.image_hw
    pts = unproject(
        scene.intrinsics[i].numpy(), scene.extrinsics[i].numpy(), scene.depth[i].numpy()
    )
    uv, z = project(scene.intrinsics[j].numpy(), scene.extrinsics[j].numpy(), pts)
    uv, z = torch.from_numpy(uv).reshape(h, w, 2), torch.from_numpy(z).reshape(h, w)
    ui, vi = uv[..., 0].round().long(), uv[..., 1].round().long()
    inside = (z > 0) & (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    return inside, z, uv, ui.clamp(0, w - 1), vi.clamp(0, h - 1)


# --------------------------------------------------------------------------- structure


def test_shapes_dtypes_and_ranges(small_scene: Scene) -> None:
    sc = small_scene
    s, h, w = SMALL["num_views"], SMALL["height"], SMALL["width"]
    assert sc.dataset == "synthetic"
    assert sc.scene_id == f"seed0-{sc.meta['config']['trajectory']}"
    assert sc.images.shape == (s, h, w, 3) and sc.images.dtype == torch.uint8
    assert sc.intrinsics.shape == (s, 3, 3) and sc.intrinsics.dtype == torch.float64
    assert sc.extrinsics.shape == (s, 3, 4) and sc.extrinsics.dtype == torch.float64
    assert sc.depth.shape == (s, h, w) and sc.depth.dtype == torch.float32
    assert sc.valid.shape == (s, h, w) and sc.valid.dtype == torch.bool
    assert sc.metric and sc.native_unit == "m"
    # Closed room: every ray hits something.
    assert bool(sc.valid.all())
    assert bool(torch.isfinite(sc.depth).all()) and float(sc.depth.min()) > 0.1
    assert float(sc.depth.max()) < 20.0
    # Rich texture: many distinct colours and real contrast in every view.
    for img in sc.images:
        assert img.float().std() > 15.0
        assert len(torch.unique(img.reshape(-1, 3), dim=0)) > 1000
    k = intrinsics_matrix(w, h, 60.0)
    assert torch.equal(sc.intrinsics, k.expand(s, 3, 3))
    f = (w / 2) / np.tan(np.radians(30.0))
    assert k[0, 0] == pytest.approx(f) and k[1, 1] == pytest.approx(f)
    assert (k[0, 2], k[1, 2]) == (w / 2, h / 2)
    assert sc.meta["config"]["num_views"] == s
    assert len(sc.meta["objects"]) == 8


def test_single_view_and_no_objects() -> None:
    for traj in TRAJECTORIES:
        sc = render_scene(
            SyntheticConfig(num_views=1, width=40, height=30, trajectory=traj, num_objects=0)
        )
        assert sc.num_views == 1 and bool(sc.valid.all())
        assert sc.meta["objects"] == []


def test_deterministic_and_seed_dependent() -> None:
    cfg = SyntheticConfig(num_views=4, width=64, height=48, seed=3)
    a, b = render_scene(cfg), render_scene(cfg)
    for name in ("images", "depth", "valid", "extrinsics", "intrinsics"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.meta == b.meta
    c = render_scene(SyntheticConfig(num_views=4, width=64, height=48, seed=4))
    assert not torch.equal(a.images, c.images)
    assert not torch.equal(a.depth, c.depth)
    assert c.scene_id == "seed4-orbit"


def test_trajectories_differ() -> None:
    a = render_scene(SyntheticConfig(trajectory="orbit", **SMALL))
    b = render_scene(SyntheticConfig(trajectory="walk", **SMALL))
    assert not torch.allclose(a.extrinsics, b.extrinsics)


# --------------------------------------------------------------------------- geometry


def test_rotations_are_proper(small_scene: Scene) -> None:
    rot = small_scene.extrinsics[:, :, :3]
    eye = torch.eye(3, dtype=torch.float64).expand_as(rot)
    assert torch.allclose(rot.transpose(1, 2) @ rot, eye, atol=1e-12, rtol=0)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(rot.shape[0], dtype=torch.float64))


def test_cameras_inside_room_and_clear_of_objects(small_scene: Scene) -> None:
    centres = small_scene.camera_to_world()[:, :, 3].numpy()
    room = small_scene.meta["room"]
    lo, hi = np.asarray(room["min"]), np.asarray(room["max"])
    assert np.all(centres > lo + 0.5) and np.all(centres < hi - 0.5)
    for obj in small_scene.meta["objects"]:
        if obj["type"] == "sphere":
            centre, radius = np.asarray(obj["centre"]), obj["radius"]
            dist = np.linalg.norm(centres - centre, axis=1) - radius
            omin, omax = centre - radius, centre + radius
        else:
            omin, omax = np.asarray(obj["min"]), np.asarray(obj["max"])
            gap = np.maximum(omin - centres, centres - omax)
            dist = np.linalg.norm(np.maximum(gap, 0.0), axis=1)
        assert dist.min() > 0.5
        assert np.all(omin >= lo - 1e-9) and np.all(omax <= hi + 1e-9)  # inside the room


def test_walk_moves_forward() -> None:
    sc = render_scene(SyntheticConfig(trajectory="walk", num_views=16, width=32, height=24))
    c2w = sc.camera_to_world()
    centres, forward = c2w[:, :, 3], c2w[:, :, 2]
    step = centres[1:] - centres[:-1]
    # Moves along its viewing direction, with small rotations between frames.
    assert bool(((step * forward[:-1]).sum(-1) > 0).all())
    cos = (forward[1:] * forward[:-1]).sum(-1)
    assert float(cos.min()) > np.cos(np.radians(10.0))


def test_depth_matches_independent_ray_caster(small_scene: Scene) -> None:
    """Re-cast every ray in numpy from the scene description in `meta`: depth must agree."""
    sc = small_scene
    h, w = sc.image_hw
    room = sc.meta["room"]
    lo, hi = np.asarray(room["min"]), np.asarray(room["max"])
    k = sc.intrinsics[0].numpy()
    uv = _pixel_grid(h, w).numpy().reshape(-1, 2)
    d_cam = np.stack(
        ((uv[:, 0] - k[0, 2]) / k[0, 0], (uv[:, 1] - k[1, 2]) / k[1, 1], np.ones(len(uv))), 1
    )
    for i in range(sc.num_views):
        e = sc.extrinsics[i].numpy()
        rot, t = e[:, :3], e[:, 3]
        o = -rot.T @ t
        d = d_cam @ rot  # R^T d_cam as rows; the ray parameter is the z-depth
        with np.errstate(divide="ignore", invalid="ignore"):
            best = np.min(np.where(d > 0, (hi - o) / d, (lo - o) / d), axis=1)
            for obj in sc.meta["objects"]:
                if obj["type"] == "sphere":
                    oc = o - np.asarray(obj["centre"])
                    a = (d * d).sum(1)
                    b = d @ oc
                    c = oc @ oc - obj["radius"] ** 2
                    tt = (-b - np.sqrt(b * b - a * c)) / a
                else:
                    t1 = (np.asarray(obj["min"]) - o) / d
                    t2 = (np.asarray(obj["max"]) - o) / d
                    near = np.minimum(t1, t2).max(1)
                    far = np.maximum(t1, t2).min(1)
                    tt = np.where((near <= far) & (near > 0), near, np.inf)
                best = np.where(tt > 0, np.fmin(best, tt), best)
        got = sc.depth[i].numpy().reshape(-1).astype(np.float64)
        rel = np.abs(got - best) / best
        assert rel.max() < 1e-6, (i, rel.max())


def test_pixel_round_trip_is_exact(small_scene: Scene) -> None:
    sc = small_scene
    h, w = sc.image_hw
    k, w2c, depth = sc.intrinsics.numpy(), sc.extrinsics.numpy(), sc.depth.numpy()
    pts = unproject(k, w2c, depth)
    assert pts.shape == (sc.num_views, h, w, 3) and pts.dtype == np.float64
    grid = _pixel_grid(h, w).numpy().reshape(-1, 2)
    for s in range(sc.num_views):
        uv, z = project(k[s], w2c[s], pts[s])
        assert np.abs(uv - grid).max() < 1e-9
        assert (np.abs(z - depth[s].reshape(-1)) / depth[s].reshape(-1)).max() < 1e-12
    # One camera at a time gives the same answer as the batched form.
    np.testing.assert_allclose(unproject(k[0], w2c[0], depth[0]), pts[0], atol=1e-12, rtol=0)


def test_depth_reprojects_between_views(dense_scene: Scene) -> None:
    sc = dense_scene
    inv_depth = 1.0 / sc.depth.double()
    for i, j in ((0, 1), (1, 0), (5, 6), (10, 12), (20, 18)):
        inside, z, uv, ui, vi = _reproject(sc, i, j)
        dj = sc.depth[j].double()[vi, ui]
        visible = inside & ((z - dj).abs() < 0.05 * dj)  # not occluded in view j
        assert float(visible.float().mean()) > 0.3, (i, j)
        rel = ((z - dj).abs() / dj)[visible]
        assert float(rel.median()) < 1e-2
        assert float((rel < 1e-2).float().mean()) > 0.8
        # Exact version: 1/z is affine in (u, v) on a plane, so bilinear interpolation of
        # inverse depth is exact where the 4 neighbours lie on the same plane (walls, boxes).
        h, w = sc.image_hw
        u, v = uv[..., 0], uv[..., 1]
        ok = visible & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
        u0 = u.floor().clamp(0, w - 2).long()
        v0 = v.floor().clamp(0, h - 2).long()
        fu, fv = u - u0, v - v0
        q = inv_depth[j]
        top = q[v0, u0] * (1 - fu) + q[v0, u0 + 1] * fu
        bottom = q[v0 + 1, u0] * (1 - fu) + q[v0 + 1, u0 + 1] * fu
        z_interp = 1.0 / (top * (1 - fv) + bottom * fv)
        rel_exact = ((z - z_interp).abs() / z)[ok]
        assert float((rel_exact < 1e-6).float().mean()) > 0.3, (i, j)


# --------------------------------------------------------------------------- texture


def test_colour_is_view_independent(dense_scene: Scene) -> None:
    """A world point seen in two views has the same colour (no specular, no view terms)."""
    sc = dense_scene
    checked = 0
    for i, j in ((0, 1), (7, 8), (15, 13)):
        inside, z, uv, ui, vi = _reproject(sc, i, j)
        dj = sc.depth[j].double()[vi, ui]
        frac = (uv - uv.round()).abs().amax(-1)
        # Projections landing within 0.1 px of a pixel centre see (almost) the same 3D point.
        match = inside & ((z - dj).abs() < 1e-3 * dj) & (frac < 0.1)
        ci = sc.images[i][match].int()
        cj = sc.images[j][vi[match], ui[match]].int()
        diff = (ci - cj).abs().amax(-1).float()
        checked += len(diff)
        assert float(diff.median()) <= 3.0, (i, j)
        assert float((diff <= 12).float().mean()) > 0.9, (i, j)
    assert checked > 200


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"num_views": 0}, "num_views"),
        ({"width": 0}, "size"),
        ({"height": -3}, "size"),
        ({"trajectory": "spiral"}, "orbit, walk"),
        ({"fov_deg": 180.0}, "fov_deg"),
        ({"fov_deg": 0.0}, "fov_deg"),
        ({"num_objects": -1}, "num_objects"),
        ({"num_objects": MAX_OBJECTS + 1}, "num_objects"),
        ({"num_views": 2.5}, "integer"),
        ({"seed": -1}, "seed"),
        ({"fov_deg": "wide"}, "fov_deg"),
    ],
)
def test_bad_config_raises(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        render_scene(SyntheticConfig(**kwargs))


def test_unplaceable_objects_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layout, "_CLEARANCE", 100.0)  # no room anywhere
    with pytest.raises(ConfigError, match="num_objects"):
        render_scene(SyntheticConfig(num_views=2, width=16, height=12, num_objects=1))


def test_many_objects_fit() -> None:
    sc = render_scene(SyntheticConfig(num_views=2, width=16, height=12, num_objects=MAX_OBJECTS))
    assert len(sc.meta["objects"]) == MAX_OBJECTS


@pytest.mark.slow
def test_full_size_timing() -> None:
    """Quick timing print for 64 full-size views (not an assertion on speed)."""
    t0 = time.perf_counter()
    sc = render_scene(SyntheticConfig(num_views=64, width=518, height=392))
    dt = time.perf_counter() - t0
    print(f"\nsynthetic: 64 views at 518x392 in {dt:.2f} s ({1000 * dt / 64:.1f} ms/view)")
    assert sc.images.shape == (64, 392, 518, 3) and bool(sc.valid.all())
