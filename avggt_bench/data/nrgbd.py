"""Neural RGB-D synthetic scenes: OpenGL c2w poses, fixed 60° intrinsics.

`poses.txt` holds one 4×4 OpenGL camera-to-world block per frame; a block containing `nan` marks
the frame invalid (`nan_pose`: dropped and recorded, never replaced by an identity pose).
Conversion: `c2w_cv = c2w_gl · diag(1, −1, −1, 1)`, then the rigid inverse. Files are numbered
without padding and sorted numerically (`img2` before `img10`).

Principal point (compat switch `nrgbd_principal_point`): the dataset authors' ray code
(neural-rgbd-surface-reconstruction `nerf_helpers.py` `get_rays`: direction `(i + 0.5 − W/2)/f`)
puts it at ((W−1)/2, (H−1)/2) = (319.5, 239.5) in our pixel-centre convention (`authors`, the
default); the Spann3R / CUT3R / π³ / FastVGGT evaluation loaders hard-code (W/2, H/2) = (320, 240)
(`eval_loaders`, which the presets reproducing those protocols set).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from avggt_bench.data.base import BaseLoader, FrameInfo
from avggt_bench.data.cameras import intrinsics, opengl_c2w_to_opencv, pose_problem, rigid_inverse
from avggt_bench.data.readers import read_png_u16
from avggt_bench.errors import DataError

__all__ = ["AUTHORS_K", "FOCAL", "NRGBD_K", "SCENES", "NrgbdLoader", "read_poses"]

SCENES = (
    "breakfast_room", "complete_kitchen", "green_room", "grey_white_room", "kitchen",
    "morning_apartment", "staircase", "thin_geometry", "whiteroom",
)  # fmt: skip
FOCAL = 554.2562584220408
"""320 / tan(30°): a 60° horizontal field of view at 640 px."""
NRGBD_K = intrinsics(FOCAL, FOCAL, 320.0, 240.0)
"""K of the upstream evaluation loaders: principal point (W/2, H/2)."""
AUTHORS_K = intrinsics(FOCAL, FOCAL, 319.5, 239.5)
"""K of the authors' rays (`get_rays`): principal point ((W−1)/2, (H−1)/2)."""


def read_poses(path: Path) -> np.ndarray:
    """`poses.txt` → `[N, 4, 4]` OpenGL c2w (NaN entries kept)."""
    try:
        values = [float(v) for v in Path(path).read_text().split()]
    except FileNotFoundError:
        raise DataError(f"pose file not found: {path}") from None
    except ValueError as exc:
        raise DataError(f"{path}: cannot parse the pose blocks ({exc})") from exc
    if len(values) % 16:
        raise DataError(f"{path} holds {len(values)} numbers, not a whole number of 4x4 blocks")
    return np.array(values, dtype=np.float64).reshape(-1, 4, 4)


def _numbered(folder: Path, prefix: str) -> list[int]:
    pattern = re.compile(rf"^{prefix}(\d+)\.png$")
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := pattern.match(p.name)))


class NrgbdLoader(BaseLoader):
    name = "nrgbd"
    section = "Neural RGB-D (NRGBD)"
    has_depth = True
    splits = ("all",)
    options: ClassVar[dict[str, Any]] = {"max_depth": 10.0, "min_depth": 1e-3}
    layout = """\
<root>/<scene>/                   breakfast_room complete_kitchen green_room grey_white_room
                                  kitchen morning_apartment staircase thin_geometry whiteroom
  images/img0.png ...             640x480, numbered without zero padding
  depth/depth0.png ...            uint16 mm
  poses.txt                       N blocks of 4 lines: OpenGL c2w, 'nan' blocks = invalid"""

    def sequences(self) -> list[str]:
        found = sorted(p.name for p in self.root.iterdir() if (p / "poses.txt").is_file())
        if not found:
            raise self.missing(self.root / SCENES[0] / "poses.txt", "scene folders with poses.txt")
        return found

    def has_sequence(self, sequence: str) -> bool:
        return (self.root / sequence / "poses.txt").is_file()

    @cache  # noqa: B019
    def _poses(self, sequence: str) -> np.ndarray:
        path = self.root / sequence / "poses.txt"
        if not path.is_file():
            raise self.missing(path, f"poses of {sequence}")
        return read_poses(path)

    @cache  # noqa: B019
    def native_frame_ids(self, sequence: str) -> list[int]:
        folder = self.root / sequence
        images = folder / "images"
        if not images.is_dir():
            raise self.missing(images, f"image folder of {sequence}")
        ids = _numbered(images, "img")
        poses = self._poses(sequence)
        if ids != list(range(len(ids))) or len(ids) != len(poses):
            raise DataError(
                f"{folder}: {len(ids)} images (contiguous from 0: {ids == list(range(len(ids)))}) "
                f"but {len(poses)} pose blocks; the scene is incomplete: re-extract it"
            )
        if self.load_depth:
            depths = _numbered(folder / "depth", "depth") if (folder / "depth").is_dir() else []
            if depths != ids:
                raise DataError(
                    f"{folder}/depth: {len(depths)} depth files for {len(ids)} images; "
                    "re-extract the scene"
                )
        return ids

    @property
    def K(self) -> np.ndarray:
        """The intrinsics for the compat switch `nrgbd_principal_point` (default `authors`)."""
        mode = self.compat.get("nrgbd_principal_point", "authors")
        return NRGBD_K if mode == "eval_loaders" else AUTHORS_K

    def frame_infos(self, sequence: str, indices: Sequence[int]) -> list[FrameInfo]:
        poses = self._poses(sequence)
        folder = self.root / sequence
        out = []
        for i in indices:
            c2w_gl = poses[i]
            info = FrameInfo(
                index=i,
                frame_id=i,
                image_path=folder / "images" / f"img{i}.png",
                K=self.K,
                depth_path=folder / "depth" / f"depth{i}.png",
                reason=pose_problem(c2w_gl),
            )
            if info.reason is None:
                info.w2c = rigid_inverse(opengl_c2w_to_opencv(c2w_gl))[:3]
            out.append(info)
        return out

    def frame_validity(self, sequence: str) -> list[bool]:
        return [pose_problem(p) is None for p in self._poses(sequence)]

    def read_depth(self, info: FrameInfo, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        assert info.depth_path is not None
        d = read_png_u16(info.depth_path).astype(np.float32) / np.float32(1000.0)
        valid = (d > 0) & (d <= self.opts["max_depth"]) & (d >= self.opts["min_depth"])
        return np.where(valid, d, np.float32(0)), valid
