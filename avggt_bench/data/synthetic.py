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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from avggt_bench.data.cameras import fov_focal
from avggt_bench.data.scene import Scene
from avggt_bench.errors import ConfigError
from avggt_bench.progress import progress

__all__ = [
    "FLOOR_Y",
    "MAX_OBJECTS",
    "TRAJECTORIES",
    "SyntheticConfig",
    "intrinsics_matrix",
    "render_scene",
]

TRAJECTORIES = ("orbit", "walk")
"""Valid values of `SyntheticConfig.trajectory`."""

FLOOR_Y = 1.5
"""World y of the floor (y points down; cameras sit around y = 0, i.e. 1.5 m above it)."""

MAX_OBJECTS = 64
"""Most objects `SyntheticConfig.num_objects` allows (all fit in the room clear of the path)."""

PROGRESS_MIN_VIEWS = 64
"""A progress bar is shown from this many views on."""

_CHUNK_FRAMES = 16  # progress-bar granularity
_PATH_SAMPLES = 2048  # dense samples of the continuous camera path, for object clearance
_CLEARANCE = 0.6  # metres between any object surface and the camera path
_WALL_MARGIN = 0.05  # metres between objects and the walls
_NUM_ROOM_FACES = 6  # surface ids 0..5: room faces (2 * axis + (ray_dir[axis] > 0)), then objects
_AMBIENT, _DIFFUSE = 0.45, 0.55
_LIGHT = np.array([0.35, -1.0, 0.55]) / np.linalg.norm([0.35, -1.0, 0.55])  # towards the light
_CHECKER_FREQ = 2.5  # checker cells per metre (40 cm tiles)
_NOISE_FREQ = 14.0  # value-noise lattice cells per metre (7 cm)
_NOISE_TABLE = 1 << 16  # entries of the value-noise hash table
_NUM_WAVES = 12  # random sinusoids in the spectral pattern
_HASH_PRIMES = (2750159, 7368787, 15485863)  # int32-safe for |cell| < _HASH_MAX_CELL
_HASH_MAX_CELL = (2**31 - 1) // 15485863 - 1


@dataclass(frozen=True)
class SyntheticConfig:
    """What to render: view count, image size (W x H), seed, camera path, horizontal FoV."""

    num_views: int = 16
    width: int = 518
    height: int = 392
    seed: int = 0
    trajectory: str = "orbit"
    fov_deg: float = 60.0
    num_objects: int = 8

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid field and the valid range."""
        for name in ("num_views", "width", "height", "seed", "num_objects"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ConfigError(f"synthetic.{name} must be an integer, got {value!r}")
        if self.num_views < 1:
            raise ConfigError(f"synthetic.num_views must be >= 1, got {self.num_views}")
        if self.seed < 0:
            raise ConfigError(f"synthetic.seed must be >= 0, got {self.seed}")
        if self.width < 1 or self.height < 1:
            raise ConfigError(
                f"synthetic image size must be positive, got width={self.width} "
                f"height={self.height}"
            )
        if not 0 <= self.num_objects <= MAX_OBJECTS:
            raise ConfigError(
                f"synthetic.num_objects must be in [0, {MAX_OBJECTS}], got {self.num_objects}"
            )
        if self.trajectory not in TRAJECTORIES:
            raise ConfigError(
                f"unknown synthetic.trajectory {self.trajectory!r}; valid choices: "
                f"{', '.join(TRAJECTORIES)}"
            )
        try:
            fov = float(self.fov_deg)
        except (TypeError, ValueError):
            fov = math.nan
        if not (math.isfinite(fov) and 0.0 < fov < 180.0):
            raise ConfigError(f"synthetic.fov_deg must be in (0, 180), got {self.fov_deg}")


# --------------------------------------------------------------------------- camera geometry


def intrinsics_matrix(width: int, height: int, fov_deg: float) -> torch.Tensor:
    """Pinhole K (float64 [3, 3]): fx = fy = (W / 2) / tan(fov / 2), cx = W / 2, cy = H / 2."""
    f = fov_focal(width, fov_deg)
    return torch.tensor(
        [[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    )


def _look_rotation(forward: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """World-to-camera rotation (OpenCV axes) looking along `forward`, world y down, rolled."""
    z = forward / np.linalg.norm(forward)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rot = np.stack((x, y, z))  # rows: camera axes in world coordinates
    c, s = math.cos(roll), math.sin(roll)
    roll_m = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return roll_m @ rot


# --------------------------------------------------------------------------- scene layout


@dataclass(frozen=True)
class _Room:
    lo: np.ndarray  # [3] min corner
    hi: np.ndarray  # [3] max corner


def _make_room(rng: np.random.Generator) -> _Room:
    half_x = rng.uniform(3.6, 4.6)
    half_z = rng.uniform(2.8, 3.6)
    height = rng.uniform(2.7, 3.2)
    lo = np.array([-half_x, FLOOR_Y - height, -half_z])
    hi = np.array([half_x, FLOOR_Y, half_z])
    return _Room(lo, hi)


def _trajectory(
    kind: str, room: _Room, s: np.ndarray, rng: np.random.Generator, rotations: bool = True
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Camera centres `[N, 3]` and world-to-camera rotations at path parameters s in [0, 1].

    The random path parameters are drawn first, so the same generator state gives the same
    continuous path whatever `s` is. `rotations=False` skips the rotations (returns []).
    """
    half = (room.hi - room.lo) / 2.0
    centre = (room.hi + room.lo) / 2.0
    ph = rng.uniform(0.0, 2.0 * math.pi, size=8)
    amp = rng.uniform(0.6, 1.0, size=4)
    centres = np.zeros((len(s), 3))
    rots: list[np.ndarray] = []
    if kind == "orbit":
        theta = ph[0] + 2.0 * math.pi * s
        radius = 1.0 + 0.08 * amp[0] * np.sin(2.0 * theta + ph[1])
        centres[:, 0] = centre[0] + 0.58 * half[0] * radius * np.cos(theta)
        centres[:, 2] = centre[2] + 0.58 * half[2] * radius * np.sin(theta)
        centres[:, 1] = 0.15 * amp[1] * np.sin(3.0 * theta + ph[2])
        for i, th in enumerate(theta if rotations else ()):
            target = np.array(
                [
                    centre[0] + 0.25 * math.cos(2.0 * th + ph[3]),
                    0.45 + 0.1 * math.sin(th + ph[4]),
                    centre[2] + 0.25 * math.sin(3.0 * th + ph[5]),
                ]
            )
            roll = math.radians(2.0) * math.sin(5.0 * th + ph[6])
            rots.append(_look_rotation(target - centres[i], roll))
    else:  # walk: forward along +x, gentle sway and bob, small handheld rotations
        length = 0.7 * half[0]
        sway = 0.35 * amp[0]
        tau = 2.0 * math.pi * s
        centres[:, 0] = centre[0] - length + 2.0 * length * s
        centres[:, 2] = centre[2] + sway * np.sin(tau + ph[0])
        centres[:, 1] = 0.04 * np.sin(6.0 * tau + ph[1])
        heading = np.arctan2(sway * 2.0 * math.pi * np.cos(tau + ph[0]), 2.0 * length)
        yaw = heading + math.radians(4.0) * amp[1] * np.sin(2.0 * tau + ph[2])
        pitch = math.radians(8.0) + math.radians(2.0) * amp[2] * np.sin(3.0 * tau + ph[3])
        roll = math.radians(1.5) * amp[3] * np.sin(3.0 * tau + ph[4])
        for i in range(len(s) if rotations else 0):
            forward = np.array(
                [
                    math.cos(yaw[i]) * math.cos(pitch[i]),
                    math.sin(pitch[i]),  # y down: positive pitch looks slightly down
                    math.sin(yaw[i]) * math.cos(pitch[i]),
                ]
            )
            rots.append(_look_rotation(forward, float(roll[i])))
    return centres, rots


def _path_params(kind: str, n: int) -> np.ndarray:
    if kind == "orbit":  # a closed loop: do not repeat the first view
        return np.arange(n, dtype=np.float64) / n
    return np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)


@dataclass(frozen=True)
class _Object:
    kind: str  # "sphere" | "box"
    lo: np.ndarray  # bounding-box min corner [3]
    hi: np.ndarray  # bounding-box max corner [3]
    centre: np.ndarray
    radius: float  # sphere radius, or bounding-sphere radius of a box

    def distance(self, pts: np.ndarray) -> np.ndarray:
        """Distance from points `[N, 3]` to the surface (<= 0 inside)."""
        if self.kind == "sphere":
            return np.linalg.norm(pts - self.centre, axis=1) - self.radius
        gap = np.maximum(np.maximum(self.lo - pts, pts - self.hi), 0.0)
        return np.linalg.norm(gap, axis=1)

    def describe(self) -> dict[str, Any]:
        if self.kind == "sphere":
            return {"type": "sphere", "centre": self.centre.tolist(), "radius": self.radius}
        return {"type": "box", "min": self.lo.tolist(), "max": self.hi.tolist()}


def _place_objects(
    n: int, room: _Room, path: np.ndarray, rng: np.random.Generator
) -> list[_Object]:
    """`n` objects inside the room, clear of the camera path and of each other."""
    objects: list[_Object] = []
    for index in range(n):
        scale = 1.0
        for attempt in range(600):
            if attempt and attempt % 100 == 0:
                scale *= 0.8
            if rng.random() < 0.5:
                r = rng.uniform(0.2, 0.55) * scale
                lo_c = room.lo + r + _WALL_MARGIN
                hi_c = room.hi - r - _WALL_MARGIN
                c = rng.uniform(lo_c, hi_c)
                obj = _Object("sphere", c - r, c + r, c, float(r))
            else:
                half = rng.uniform(0.15, 0.6, size=3) * scale
                lo_c = room.lo + half + _WALL_MARGIN
                hi_c = room.hi - half - _WALL_MARGIN
                c = rng.uniform(lo_c, hi_c)
                if rng.random() < 0.7:  # rests on the floor
                    c[1] = room.hi[1] - half[1]
                obj = _Object("box", c - half, c + half, c, float(np.linalg.norm(half)))
            if obj.distance(path).min() < _CLEARANCE:
                continue
            if any(
                np.linalg.norm(obj.centre - o.centre) < obj.radius + o.radius + 0.05
                for o in objects
            ):
                continue
            objects.append(obj)
            break
        else:
            raise ConfigError(
                f"could not place synthetic object {index + 1} of {n} clear of the camera path; "
                "lower synthetic.num_objects"
            )
    return objects


# --------------------------------------------------------------------------- texture


@dataclass(frozen=True)
class _Texture:
    table: torch.Tensor  # [7, n_ids] float32: base RGB (0..255), pattern offset xyz, face shade
    waves: torch.Tensor  # [M, 3] float32 wave vectors (radians per metre)
    phases: torch.Tensor  # [M, 1] float32
    wave_rgb: torch.Tensor  # [3, M] float32 colour weight of each wave
    noise: torch.Tensor  # [_NOISE_TABLE] float32 value-noise lattice values in [-1, 1]


def _face_shades() -> np.ndarray:
    """Lambert shade of face 2a + p: normal -e_a if p else +e_a (faces the incoming ray)."""
    shades = np.zeros(_NUM_ROOM_FACES)
    for a in range(3):
        for p in range(2):
            normal = np.zeros(3)
            normal[a] = -1.0 if p else 1.0
            shades[2 * a + p] = _AMBIENT + _DIFFUSE * max(0.0, float(normal @ _LIGHT))
    return shades


def _safe_offset(rng: np.random.Generator, planes: list[tuple[int, float]]) -> np.ndarray:
    """Random pattern offset keeping every constant-coordinate face off checker cell edges."""
    for _ in range(1000):
        off = rng.uniform(0.0, 1.0 / _CHECKER_FREQ, size=3)
        ok = True
        for axis, value in planes:
            frac = ((value + off[axis]) * _CHECKER_FREQ) % 1.0
            ok = ok and 0.05 < frac < 0.95
        if ok:
            return off
    return off  # pragma: no cover - probability ~0


def _make_texture(room: _Room, objects: list[_Object], rng: np.random.Generator) -> _Texture:
    # Pattern coordinates stay within the room plus one checker cell of offset: keep the int32
    # value-noise hash free of overflow.
    reach = (np.abs(np.concatenate((room.lo, room.hi))).max() + 1.0 / _CHECKER_FREQ) * _NOISE_FREQ
    assert reach + 2 < _HASH_MAX_CELL, "room too large for the value-noise hash"
    n_ids = _NUM_ROOM_FACES + len(objects)
    table = np.zeros((n_ids, 7))
    room_rgb = {  # walls pastel, ceiling light, floor darker and warmer
        0: (196, 170, 140),
        1: (150, 178, 200),
        2: (225, 222, 212),
        3: (150, 110, 80),
        4: (170, 200, 160),
        5: (205, 160, 175),
    }
    shades = _face_shades()
    for face, rgb in room_rgb.items():
        axis = face // 2
        value = room.hi[axis] if face % 2 else room.lo[axis]
        jitter = rng.uniform(-20.0, 20.0, size=3)
        table[face, :3] = np.clip(np.asarray(rgb) + jitter, 30.0, 235.0)
        table[face, 3:6] = _safe_offset(rng, [(axis, float(value))])
        table[face, 6] = shades[face]
    for k, obj in enumerate(objects):
        hue = rng.uniform(0.0, 1.0)
        # Saturated colour from a hue: cosine palette, clipped into [40, 235].
        rgb = 135.0 + 100.0 * np.cos(2.0 * math.pi * (hue + np.array([0.0, 1 / 3, 2 / 3])))
        planes: list[tuple[int, float]] = []
        if obj.kind == "box":
            planes = [(a, float(v)) for a in range(3) for v in (obj.lo[a], obj.hi[a])]
        table[_NUM_ROOM_FACES + k, :3] = np.clip(rgb, 40.0, 235.0)
        table[_NUM_ROOM_FACES + k, 3:6] = _safe_offset(rng, planes)
        table[_NUM_ROOM_FACES + k, 6] = 1.0
    # Spectral pattern: random directions, log-uniform frequencies 0.5..6 cycles per metre.
    dirs = rng.normal(size=(_NUM_WAVES, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    freq = 2.0 * math.pi * np.exp(rng.uniform(math.log(0.5), math.log(6.0), size=_NUM_WAVES))
    waves = dirs * freq[:, None]
    phases = rng.uniform(0.0, 2.0 * math.pi, size=_NUM_WAVES)
    wave_rgb = rng.normal(size=(_NUM_WAVES, 3))
    wave_rgb /= np.abs(wave_rgb).sum(axis=0, keepdims=True)  # |sum| <= 1 per channel
    noise = rng.uniform(-1.0, 1.0, size=_NOISE_TABLE)

    def f32(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    return _Texture(f32(table.T), f32(waves), f32(phases[:, None]), f32(wave_rgb.T), f32(noise))


def _value_noise(q: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Trilinear hash value noise `[N]` in [-1, 1] at lattice coordinates `q` `[3, N]`.

    The lattice corner (i, j, k) reads `table[(i p0) ^ (j p1) ^ (k p2) & mask]`, in int32
    without overflow as long as |i|, |j|, |k| < `_HASH_MAX_CELL`.
    """
    cell = torch.floor(q)
    frac = q - cell
    w = frac * frac * (3.0 - 2.0 * frac)  # smoothstep weights
    ic = cell.to(torch.int32)
    p0, p1, p2 = _HASH_PRIMES
    hx0 = ic[0] * p0
    hx1 = hx0 + p0
    hy0 = ic[1] * p1
    hz0 = ic[2] * p2
    mask = _NOISE_TABLE - 1
    out = None
    for hz in (hz0, hz0 + p2):
        plane = None
        for hy in (hy0, hy0 + p1):
            hyz = hy ^ hz
            row = torch.lerp(table[(hx0 ^ hyz) & mask], table[(hx1 ^ hyz) & mask], w[0])
            plane = row if plane is None else torch.lerp(plane, row, w[1])
        out = plane if out is None else torch.lerp(out, plane, w[2])
    assert out is not None
    return out


def _surface_colour(points: torch.Tensor, ids: torch.Tensor, tex: _Texture) -> torch.Tensor:
    """Unshaded colour (float32 `[3, N]`, about 0..255) of world points `[3, N]` on `ids` `[N]`.

    A function of the 3D point and the surface id only, hence identical in every view.
    """
    row = tex.table.index_select(1, ids)  # [7, N]
    q = points.to(torch.float32) + row[3:6]
    checker = torch.floor(q * _CHECKER_FREQ).sum(dim=0).remainder_(2.0)  # 0 / 1
    waves = tex.wave_rgb @ torch.sin(torch.addmm(tex.phases, tex.waves, q))  # [3, N] in [-1, 1]
    noise = _value_noise(q * _NOISE_FREQ, tex.noise)  # [N] in [-1, 1]
    factor = (checker * 0.3 + noise * 0.3 + 0.74).unsqueeze(0) + 0.28 * waves
    return row[:3] * factor


# --------------------------------------------------------------------------- rendering


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
    obj: _Object, rot: np.ndarray, centre: np.ndarray, grid: _Grid, width: int, height: int
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
    room: _Room,
    objects: list[_Object],
    grid: _Grid,
    tex: _Texture,
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
    shade_table = tex.table[6, :_NUM_ROOM_FACES].to(torch.float64)
    shade = shade_table[face]
    light = _LIGHT.tolist()
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
            sh = lam * _DIFFUSE + _AMBIENT
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
        ids[v0:v1, u0:u1].masked_fill_(hit, _NUM_ROOM_FACES + k)
        shade[v0:v1, u0:u1].copy_(torch.where(hit, sh, shade[v0:v1, u0:u1]))
    return t_best, ids, shade, dirs


def _shade_frame(
    t_best: torch.Tensor,
    ids: torch.Tensor,
    shade: torch.Tensor,
    dirs: list[torch.Tensor],
    centre: np.ndarray,
    tex: _Texture,
) -> torch.Tensor:
    """uint8 `[H, W, 3]` image of one view from its hits."""
    o = centre.tolist()
    # Hit points: float64 geometry, texture evaluated in float32.
    points = torch.stack([(dirs[a] * t_best + o[a]).view(-1) for a in range(3)])
    colour = _surface_colour(points, ids.view(-1), tex)
    colour.mul_(shade.view(1, -1).to(torch.float32)).add_(0.5).clamp_(0.0, 255.0)
    return colour.to(torch.uint8).t().reshape(*t_best.shape, 3)


def render_scene(cfg: SyntheticConfig) -> Scene:
    """Render the procedural scene of `cfg` with exact depth, poses and intrinsics."""
    cfg.validate()
    s_views, width, height = int(cfg.num_views), int(cfg.width), int(cfg.height)
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 0x5EED]))
    room = _make_room(rng)
    traj_rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 0x7A]))
    traj_state = traj_rng.bit_generator.state
    # Dense samples of the continuous path (same random parameters as the views).
    dense_s = np.linspace(0.0, 1.0, _PATH_SAMPLES)
    dense, _ = _trajectory(cfg.trajectory, room, dense_s, traj_rng, rotations=False)
    traj_rng.bit_generator.state = traj_state
    centres, rots = _trajectory(
        cfg.trajectory, room, _path_params(cfg.trajectory, s_views), traj_rng
    )
    path = np.concatenate((dense, centres))
    objects = _place_objects(int(cfg.num_objects), room, path, rng)
    tex = _make_texture(room, objects, rng)

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
