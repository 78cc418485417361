"""Layout of the procedural scene: the box room, the camera path (`orbit` or `walk`, strictly
inside the room) and the spheres and boxes placed clear of it, all drawn from seeded generators;
plus the pinhole intrinsics of a horizontal field of view."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from avggt_bench.data.cameras import fov_focal
from avggt_bench.errors import ConfigError

TRAJECTORIES = ("orbit", "walk")
"""Valid values of `SyntheticConfig.trajectory`."""

FLOOR_Y = 1.5
"""World y of the floor (y points down; cameras sit around y = 0, i.e. 1.5 m above it)."""

MAX_OBJECTS = 64
"""Most objects `SyntheticConfig.num_objects` allows (all fit in the room clear of the path)."""

PATH_SAMPLES = 2048  # dense samples of the continuous camera path, for object clearance
_CLEARANCE = 0.6  # metres between any object surface and the camera path
_WALL_MARGIN = 0.05  # metres between objects and the walls
NUM_ROOM_FACES = 6  # surface ids 0..5: room faces (2 * axis + (ray_dir[axis] > 0)), then objects


def intrinsics_matrix(width: int, height: int, fov_deg: float) -> torch.Tensor:
    """Pinhole K (float64 [3, 3]): fx = fy = (W / 2) / tan(fov / 2), cx = W / 2, cy = H / 2."""
    f = fov_focal(width, fov_deg)
    return torch.tensor(
        [[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]], dtype=torch.float64
    )


def look_rotation(forward: np.ndarray, roll: float = 0.0) -> np.ndarray:
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
class Room:
    lo: np.ndarray  # [3] min corner
    hi: np.ndarray  # [3] max corner


def make_room(rng: np.random.Generator) -> Room:
    half_x = rng.uniform(3.6, 4.6)
    half_z = rng.uniform(2.8, 3.6)
    height = rng.uniform(2.7, 3.2)
    lo = np.array([-half_x, FLOOR_Y - height, -half_z])
    hi = np.array([half_x, FLOOR_Y, half_z])
    return Room(lo, hi)


def trajectory(
    kind: str, room: Room, s: np.ndarray, rng: np.random.Generator, rotations: bool = True
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
            rots.append(look_rotation(target - centres[i], roll))
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
            rots.append(look_rotation(forward, float(roll[i])))
    return centres, rots


def path_params(kind: str, n: int) -> np.ndarray:
    if kind == "orbit":  # a closed loop: do not repeat the first view
        return np.arange(n, dtype=np.float64) / n
    return np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)


@dataclass(frozen=True)
class SceneObject:
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


def place_objects(
    n: int, room: Room, path: np.ndarray, rng: np.random.Generator
) -> list[SceneObject]:
    """`n` objects inside the room, clear of the camera path and of each other."""
    objects: list[SceneObject] = []
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
                obj = SceneObject("sphere", c - r, c + r, c, float(r))
            else:
                half = rng.uniform(0.15, 0.6, size=3) * scale
                lo_c = room.lo + half + _WALL_MARGIN
                hi_c = room.hi - half - _WALL_MARGIN
                c = rng.uniform(lo_c, hi_c)
                if rng.random() < 0.7:  # rests on the floor
                    c[1] = room.hi[1] - half[1]
                obj = SceneObject("box", c - half, c + half, c, float(np.linalg.norm(half)))
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
