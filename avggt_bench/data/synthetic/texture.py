"""Surface texture of the procedural scene: a view-independent colour of the 3D hit point and
surface id (per-surface base colour x a checker x random sinusoids + hash-based value noise), and
the Lambertian shading constants of the fixed light."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from avggt_bench.data.synthetic.layout import NUM_ROOM_FACES, Room, SceneObject

AMBIENT, DIFFUSE = 0.45, 0.55
LIGHT = np.array([0.35, -1.0, 0.55]) / np.linalg.norm([0.35, -1.0, 0.55])  # towards the light
_CHECKER_FREQ = 2.5  # checker cells per metre (40 cm tiles)
_NOISE_FREQ = 14.0  # value-noise lattice cells per metre (7 cm)
_NOISE_TABLE = 1 << 16  # entries of the value-noise hash table
_NUM_WAVES = 12  # random sinusoids in the spectral pattern
_HASH_PRIMES = (2750159, 7368787, 15485863)  # int32-safe for |cell| < _HASH_MAX_CELL
_HASH_MAX_CELL = (2**31 - 1) // 15485863 - 1


@dataclass(frozen=True)
class Texture:
    table: torch.Tensor  # [7, n_ids] float32: base RGB (0..255), pattern offset xyz, face shade
    waves: torch.Tensor  # [M, 3] float32 wave vectors (radians per metre)
    phases: torch.Tensor  # [M, 1] float32
    wave_rgb: torch.Tensor  # [3, M] float32 colour weight of each wave
    noise: torch.Tensor  # [_NOISE_TABLE] float32 value-noise lattice values in [-1, 1]


def _face_shades() -> np.ndarray:
    """Lambert shade of face 2a + p: normal -e_a if p else +e_a (faces the incoming ray)."""
    shades = np.zeros(NUM_ROOM_FACES)
    for a in range(3):
        for p in range(2):
            normal = np.zeros(3)
            normal[a] = -1.0 if p else 1.0
            shades[2 * a + p] = AMBIENT + DIFFUSE * max(0.0, float(normal @ LIGHT))
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


def make_texture(room: Room, objects: list[SceneObject], rng: np.random.Generator) -> Texture:
    # Pattern coordinates stay within the room plus one checker cell of offset: keep the int32
    # value-noise hash free of overflow.
    reach = (np.abs(np.concatenate((room.lo, room.hi))).max() + 1.0 / _CHECKER_FREQ) * _NOISE_FREQ
    assert reach + 2 < _HASH_MAX_CELL, "room too large for the value-noise hash"
    n_ids = NUM_ROOM_FACES + len(objects)
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
        table[NUM_ROOM_FACES + k, :3] = np.clip(rgb, 40.0, 235.0)
        table[NUM_ROOM_FACES + k, 3:6] = _safe_offset(rng, planes)
        table[NUM_ROOM_FACES + k, 6] = 1.0
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

    return Texture(f32(table.T), f32(waves), f32(phases[:, None]), f32(wave_rgb.T), f32(noise))


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


def surface_colour(points: torch.Tensor, ids: torch.Tensor, tex: Texture) -> torch.Tensor:
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
