"""Procedural multi-view scene with exact ground truth: the benchmark's default dataset.

A closed, axis-aligned box room (textured walls, floor and ceiling) holds `num_objects` spheres
and axis-aligned boxes at seeded random positions. Cameras follow an `orbit` (an ellipse around
the room centre, looking at it) or a `walk` (a smooth forward path with small handheld
rotations); every camera stays strictly inside the room and clear of the objects, so every ray
hits a surface and depth is valid everywhere.

Rendering is analytic ray casting (ray-plane for the room, ray-sphere, slab test for boxes), in
float64, one frame at a time (about 200k rays for 518x392). A ray through pixel centre (u, v)
has camera direction ((u - cx) / fx, (v - cy) / fy, 1), so its hit parameter *is* the z-depth.
Colour is a view-independent function of the 3D hit point and the surface id: per-surface base
colour x a checker x a sum of random sinusoids + hash-based value noise, times a Lambertian
term from a fixed light. Same config gives bit-identical output (all randomness comes from
`numpy.random.default_rng(seed)`).

World frame: OpenCV-like, y points down (gravity is +y); the floor is the plane
y = `FLOOR_Y`. Extrinsics are world-to-camera `[R | t]` with OpenCV camera axes.

The package: `layout` (room, camera path, objects, intrinsics), `texture` (surface colour and
shading constants), `renderer` (ray casting and `render_scene`), `config` (`SyntheticConfig`).
"""

from avggt_bench.data.synthetic.config import SyntheticConfig
from avggt_bench.data.synthetic.layout import FLOOR_Y, MAX_OBJECTS, TRAJECTORIES, intrinsics_matrix
from avggt_bench.data.synthetic.renderer import render_scene

__all__ = [
    "FLOOR_Y",
    "MAX_OBJECTS",
    "TRAJECTORIES",
    "SyntheticConfig",
    "intrinsics_matrix",
    "render_scene",
]
