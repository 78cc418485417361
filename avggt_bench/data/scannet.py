"""ScanNet v2 as exported by the ScanNet SensReader.

Frames are the integer stems of `color/<i>.jpg`, sorted numerically; `pose/<i>.txt` is a 4×4
camera-to-world in OpenCV-like axes (6 decimals), and any ±inf / NaN makes the frame invalid
(`inf_pose` / `nan_pose`). Colour intrinsics come from `intrinsic/intrinsic_color.txt` (for
1296×968) and follow the half-pixel resize rule (docs/conventions.md) when the exported colour
has another size. Depth is not provided: it is 640×480 in the depth camera, and no protocol
compares against it. For ScanNet-50 the mesh vertices of `<scene>_vh_clean_2.ply` are the
reference points.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from avggt_bench.data.base import BaseLoader, FrameInfo
from avggt_bench.data.cameras import pose_problem, resize_intrinsics, rigid_inverse
from avggt_bench.data.readers import read_matrix_text, read_ply_vertices
from avggt_bench.errors import DataError

__all__ = ["ScannetLoader"]


class ScannetLoader(BaseLoader):
    name = "scannet"
    section = "ScanNet v2"
    splits = ("all",)
    options: ClassVar[dict[str, Any]] = {"mesh_root": None, "color_hw": (968, 1296)}
    layout = """\
<root>/<sceneXXXX_YY>/
  color/0.jpg 1.jpg ...                  1296x968 (SensReader export)
  pose/0.txt ...                         4x4 camera-to-world, may contain -inf / nan
  intrinsic/intrinsic_color.txt          4x4, top-left 3x3 is K for 1296x968
<mesh_root>/<sceneXXXX_YY>/<sceneXXXX_YY>_vh_clean_2.ply   (ScanNet-50 only)"""

    def sequences(self) -> list[str]:
        found = sorted(
            p.name for p in self.root.iterdir() if re.fullmatch(r"scene\d{4}_\d{2}", p.name)
        )
        if not found:
            raise self.missing(self.root / "scene0707_00", "scene folders (sceneXXXX_YY)")
        return found

    def has_sequence(self, sequence: str) -> bool:
        return (self.root / sequence / "color").is_dir()

    @cache  # noqa: B019
    def native_frame_ids(self, sequence: str) -> list[int]:
        folder = self.root / sequence / "color"
        if not folder.is_dir():
            raise self.missing(folder, f"colour frames of {sequence}")
        return sorted(int(p.stem) for p in folder.iterdir() if p.stem.isdigit())

    @cache  # noqa: B019
    def _colour_k(self, sequence: str) -> np.ndarray:
        path = self.root / sequence / "intrinsic" / "intrinsic_color.txt"
        if not path.is_file():
            raise self.missing(path, f"colour intrinsics of {sequence}")
        return read_matrix_text(path, 4, 4)[:3, :3].copy()

    def frame_infos(self, sequence: str, indices: Sequence[int]) -> list[FrameInfo]:
        ids = self.native_frame_ids(sequence)
        folder = self.root / sequence
        k = self._colour_k(sequence)
        color_hw = tuple(self.opts["color_hw"])

        def k_for(hw: tuple[int, int]) -> np.ndarray:
            return k if hw == color_hw else resize_intrinsics(k, color_hw, hw)

        out = []
        for i in indices:
            fid = ids[i]
            info = FrameInfo(
                index=i,
                frame_id=fid,
                image_path=folder / "color" / f"{fid}.jpg",
                intrinsics_for=k_for,
            )
            try:
                c2w = read_matrix_text(folder / "pose" / f"{fid}.txt", 4, 4)
            except DataError:
                info.reason = "missing_pose"
            else:
                info.reason = pose_problem(c2w)
                info.w2c = None if info.reason else rigid_inverse(c2w)[:3]
            out.append(info)
        return out

    def frame_validity(self, sequence: str) -> list[bool]:
        """A valid pose and an image (FastVGGT's rule, applied before `even_first`)."""
        ids = self.native_frame_ids(sequence)
        folder = self.root / sequence
        out = []
        for fid in ids:
            try:
                c2w = read_matrix_text(folder / "pose" / f"{fid}.txt", 4, 4)
            except DataError:
                out.append(False)
                continue
            out.append(pose_problem(c2w) is None)
        return out

    def reference_points(self, sequence: str) -> np.ndarray | None:
        base = Path(self.opts["mesh_root"] or self.root).expanduser()
        path = base / sequence / f"{sequence}_vh_clean_2.ply"
        if not path.is_file():
            raise self.missing(path, f"mesh of {sequence} (needed for the Chamfer distance)")
        return read_ply_vertices(path)
