"""COLMAP text model files (`cameras.txt`, `images.txt`), as ETH3D distributes them.

`images.txt` holds two lines per image, the second (POINTS2D) possibly empty, so it is parsed
line by line without dropping empty lines before pairing. Quaternions are scalar first (wxyz)
and, with the translation, give the world-to-camera pose directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avggt_bench.data.cameras import colmap_intrinsics, quat_to_rotmat
from avggt_bench.errors import DataError

__all__ = ["CAMERA_MODELS", "ColmapCamera", "ColmapImage", "read_cameras", "read_images"]

CAMERA_MODELS = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "THIN_PRISM_FISHEYE": 12}
"""Supported models and their parameter counts."""


@dataclass(frozen=True)
class ColmapCamera:
    camera_id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]

    @property
    def focal_principal(self) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in COLMAP's convention (top-left pixel centre at (0.5, 0.5))."""
        p = self.params
        if self.model == "SIMPLE_PINHOLE":
            return p[0], p[0], p[1], p[2]
        return p[0], p[1], p[2], p[3]

    def K(self, half_pixel: str = "shift") -> np.ndarray:
        """Canonical K for the camera's size; distortion parameters are not part of K."""
        return colmap_intrinsics(*self.focal_principal, half_pixel=half_pixel)

    @property
    def fisheye(self) -> tuple[float, float, float, float]:
        """(k1, k2, k3, k4) of THIN_PRISM_FISHEYE (parameters 5, 6, 9, 10, 1-based)."""
        if self.model != "THIN_PRISM_FISHEYE":
            return (0.0, 0.0, 0.0, 0.0)
        p = self.params
        return p[4], p[5], p[8], p[9]


@dataclass(frozen=True)
class ColmapImage:
    image_id: int
    qvec_wxyz: tuple[float, float, float, float]
    tvec: tuple[float, float, float]
    camera_id: int
    name: str

    @property
    def w2c(self) -> np.ndarray:
        rot = quat_to_rotmat(np.array(self.qvec_wxyz), "wxyz")
        return np.concatenate((rot, np.array(self.tvec, dtype=np.float64)[:, None]), axis=1)


def _lines(path: Path) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except FileNotFoundError:
        raise DataError(f"COLMAP file not found: {path}") from None


def read_cameras(path: str | os.PathLike[str]) -> dict[int, ColmapCamera]:
    """`cameras.txt`: `CAMERA_ID MODEL WIDTH HEIGHT PARAMS…` per non-comment line."""
    out: dict[int, ColmapCamera] = {}
    for number, line in enumerate(_lines(Path(path)), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        tok = line.split()
        model = tok[1] if len(tok) > 1 else ""
        if model not in CAMERA_MODELS:
            raise DataError(
                f"{path}:{number}: camera model {model!r} is not supported "
                f"({', '.join(CAMERA_MODELS)})"
            )
        params = tuple(float(v) for v in tok[4:])
        if len(params) != CAMERA_MODELS[model]:
            raise DataError(
                f"{path}:{number}: {model} takes {CAMERA_MODELS[model]} parameters, "
                f"got {len(params)}"
            )
        cam = ColmapCamera(int(tok[0]), model, int(tok[2]), int(tok[3]), params)
        out[cam.camera_id] = cam
    return out


def read_images(path: str | os.PathLike[str]) -> list[ColmapImage]:
    """`images.txt`: after comment lines, pairs (pose line, POINTS2D line — possibly empty)."""
    lines = _lines(Path(path))
    i = 0
    while i < len(lines) and lines[i].startswith("#"):
        i += 1
    body = lines[i:]
    out = []
    for k in range(0, len(body), 2):
        line = body[k].strip()
        if not line:
            if any(b.strip() for b in body[k:]):
                raise DataError(
                    f"{path}: empty line where an image line was expected (line {i + k + 1}); "
                    "the file's two-lines-per-image structure is broken"
                )
            break
        tok = line.split()
        if len(tok) < 10:
            raise DataError(f"{path}:{i + k + 1}: expected 10 fields, got {len(tok)}")
        q = tuple(float(v) for v in tok[1:5])
        t = tuple(float(v) for v in tok[5:8])
        out.append(ColmapImage(int(tok[0]), q, t, int(tok[8]), " ".join(tok[9:])))  # type: ignore[arg-type]
    return out
