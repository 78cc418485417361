"""MPI Sintel training sequences: `.cam` (K, w2c) and `.dpt` depth, final pass.

Units are Sintel's scene units (not metric). The camera's world-to-camera matrix is used as is
(upstream's mean-centring of camera positions is not reproduced: it cancels under Sim(3)).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar

import numpy as np

from avggt_bench.data.base import BaseLoader, FrameInfo
from avggt_bench.data.cameras import pose_problem
from avggt_bench.data.readers import clean_depth, read_sintel_cam, read_sintel_dpt
from avggt_bench.errors import DataError

__all__ = ["SEQUENCES", "SintelLoader"]

SEQUENCES = (
    "alley_2", "ambush_4", "ambush_5", "ambush_6", "cave_2", "cave_4", "market_2", "market_5",
    "market_6", "shaman_3", "sleeping_1", "sleeping_2", "temple_2", "temple_3",
)  # fmt: skip


class SintelLoader(BaseLoader):
    name = "sintel"
    section = "MPI Sintel"
    metric = False
    native_unit = "scene"
    has_depth = True
    splits = ("training",)
    options: ClassVar[dict[str, Any]] = {"pass_name": "final"}
    layout = """\
<root>/training/
  final/<seq>/frame_0001.png ...         1024x436
  depth/<seq>/frame_0001.dpt ...
  camdata_left/<seq>/frame_0001.cam ..."""

    def _folder(self, kind: str, sequence: str = ""):
        return self.root / "training" / kind / sequence

    def sequences(self) -> list[str]:
        base = self._folder(self.opts["pass_name"])
        if not base.is_dir():
            raise self.missing(base, f"the {self.opts['pass_name']} pass")
        return sorted(p.name for p in base.iterdir() if p.is_dir())

    def has_sequence(self, sequence: str) -> bool:
        return self._folder(self.opts["pass_name"], sequence).is_dir()

    @cache  # noqa: B019
    def native_frame_ids(self, sequence: str) -> list[str]:
        folder = self._folder(self.opts["pass_name"], sequence)
        if not folder.is_dir():
            raise self.missing(folder, f"images of {sequence}")
        names = sorted(p.stem for p in folder.glob("frame_*.png"))
        if not names:
            raise DataError(f"{folder} holds no frame_*.png images; re-extract the archive")
        return names

    def frame_infos(self, sequence: str, indices: Sequence[int]) -> list[FrameInfo]:
        names = self.native_frame_ids(sequence)
        out = []
        for i in indices:
            name = names[i]
            m = re.search(r"(\d+)$", name)
            info = FrameInfo(
                index=i,
                frame_id=name,
                image_path=self._folder(self.opts["pass_name"], sequence) / f"{name}.png",
                depth_path=self._folder("depth", sequence) / f"{name}.dpt",
                timestamp=float(m.group(1)) if m else None,
            )
            try:
                k, w2c = read_sintel_cam(self._folder("camdata_left", sequence) / f"{name}.cam")
            except DataError:
                info.reason = "corrupt_camera"
            else:
                info.K, info.w2c = k, w2c
                info.reason = pose_problem(w2c)
            out.append(info)
        return out

    def read_depth(self, info: FrameInfo, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        assert info.depth_path is not None
        return clean_depth(read_sintel_dpt(info.depth_path))
