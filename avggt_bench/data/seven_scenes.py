"""Microsoft 7-Scenes: colour, registered depth, c2w pose per frame.

Sequence ids are `<scene>/seq-XX`; the split files (`TestSplit.txt`, lines `sequenceK`) name
the sequences of each scene. Depth is the raw depth registered to the colour camera (uint16 mm;
`prepare 7scenes` writes it), decoded as the Spann3R / π³ evaluation loaders do: 65535 → invalid,
then > 10 m and < 1 mm invalid. Two registrations exist (compat switch `depth_sentinel`):
`frame-XXXXXX.depth.proj.png` is what SimpleRecon's `data_scripts/7scenes_preprocessing.py`
writes, the file every upstream 7-Scenes evaluation reads: raw 65535 pixels enter it as 65.5 m and
wrap in its uint16 cast to bogus 3-35 cm depths that pass the validity filter (`keep`, the
protocol presets). `frame-XXXXXX.depth.proj.clean.png` drops them (`exclude`, the default).
Raw `*.depth.png` is never read here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from avggt_bench.data.base import BaseLoader, FrameInfo
from avggt_bench.data.cameras import intrinsics, pose_problem, rigid_inverse
from avggt_bench.data.readers import read_matrix_text, read_png_u16
from avggt_bench.errors import DataError

__all__ = ["COLOUR_K", "DEPTH_SUFFIXES", "SCENES", "SevenScenesLoader", "depth_from_png"]

SCENES = ("chess", "fire", "heads", "office", "pumpkin", "redkitchen", "stairs")
COLOUR_K = intrinsics(525.0, 525.0, 320.0, 240.0)
"""Colour intrinsics at 640×480 (the registered depth uses them too)."""

DEPTH_SUFFIXES = {"keep": "depth.proj.png", "exclude": "depth.proj.clean.png"}
"""Registered-depth file per `depth_sentinel` value (SimpleRecon's name for the upstream data)."""

_FRAME = re.compile(r"^frame-(\d{6})\.color\.png$")


def depth_from_png(png: np.ndarray, max_depth: float = 10.0, min_depth: float = 1e-3):
    """Registered 7-Scenes depth PNG (uint16 mm) → (metres float32, valid) by the upstream rule."""
    d = png.astype(np.float32) / np.float32(1000.0)
    valid = (png != 65535) & (d <= max_depth) & (d >= min_depth)
    return np.where(valid, d, np.float32(0)), valid


class SevenScenesLoader(BaseLoader):
    name = "7scenes"
    section = "7-Scenes"
    has_depth = True
    splits = ("test", "train", "all")
    options: ClassVar[dict[str, Any]] = {
        "depth_suffix": None,  # None: DEPTH_SUFFIXES[compat depth_sentinel]
        "max_depth": 10.0,
        "min_depth": 1e-3,
    }
    layout = """\
<root>/<scene>/                      chess fire heads office pumpkin redkitchen stairs
  TrainSplit.txt  TestSplit.txt      lines "sequenceK" -> folder seq-KK
  seq-XX/frame-000000.color.png      640x480 RGB
  seq-XX/frame-000000.depth.proj.png registered depth as SimpleRecon writes it (uint16 mm)
  seq-XX/frame-000000.depth.proj.clean.png  the same without the wrapped 65535 pixels
                                     (both written by `prepare 7scenes`)
  seq-XX/frame-000000.pose.txt       4x4 camera-to-world"""

    def sequences(self) -> list[str]:
        found = [s for s in SCENES if (self.root / s).is_dir()]
        if not found:
            raise self.missing(self.root / SCENES[0], "scene folders (chess, fire, ...)")
        out = []
        for scene in found:
            names = ["TestSplit.txt", "TrainSplit.txt"]
            if self.split == "test":
                names = names[:1]
            elif self.split == "train":
                names = names[1:]
            for split_file in names:
                path = self.root / scene / split_file
                if not path.is_file():
                    raise self.missing(path, "split file")
                for line in path.read_text().split():
                    m = re.fullmatch(r"sequence(\d+)", line.strip())
                    if m is None:
                        raise DataError(f"{path}: unexpected line {line!r} (want 'sequenceK')")
                    out.append(f"{scene}/seq-{int(m.group(1)):02d}")
        return sorted(out)

    def has_sequence(self, sequence: str) -> bool:
        return (self.root / sequence).is_dir()

    @property
    def depth_suffix(self) -> str:
        """The registered-depth file suffix: the option, else by compat `depth_sentinel`."""
        if self.opts["depth_suffix"]:
            return str(self.opts["depth_suffix"])
        return DEPTH_SUFFIXES[self.compat.get("depth_sentinel", "exclude")]

    def _dir(self, sequence: str) -> Path:
        path = self.root / sequence
        if not path.is_dir():
            raise self.missing(path, f"sequence folder of {sequence}")
        return path

    @cache  # noqa: B019 - loaders are few and long-lived; the listing never changes under them
    def native_frame_ids(self, sequence: str) -> list[int]:
        folder = self._dir(sequence)
        ids = sorted(int(m.group(1)) for p in folder.iterdir() if (m := _FRAME.match(p.name)))
        if ids != list(range(len(ids))):
            gaps = sorted(set(range(max(ids, default=-1) + 1)) - set(ids))[:5]
            raise DataError(
                f"{folder}: colour frames are not contiguous from 0 (missing {gaps}...); the "
                "sequence archive is incomplete: re-extract it"
            )
        poses = len(list(folder.glob("frame-*.pose.txt")))
        if poses != len(ids):
            raise DataError(
                f"{folder}: {len(ids)} colour frames but {poses} pose files; re-extract the "
                "sequence archive"
            )
        if self.load_depth:
            suffix = self.depth_suffix
            depths = len(list(folder.glob(f"frame-*.{suffix}")))
            if depths != len(ids):
                raise DataError(
                    f"{folder}: {len(ids)} colour frames but {depths} '*.{suffix}' files; run "
                    "`python -m avggt_bench.data.prepare 7scenes` (it writes both registrations; "
                    "datasets/README.md, section '7-Scenes')"
                )
        return ids

    def frame_infos(self, sequence: str, indices: Sequence[int]) -> list[FrameInfo]:
        folder = self._dir(sequence)
        out = []
        for i in indices:
            stem = folder / f"frame-{i:06d}"
            info = FrameInfo(
                index=i,
                frame_id=i,
                image_path=Path(f"{stem}.color.png"),
                K=COLOUR_K,
                depth_path=Path(f"{stem}.{self.depth_suffix}"),
            )
            try:
                c2w = read_matrix_text(f"{stem}.pose.txt", 4, 4)
            except DataError:
                info.reason = "corrupt_pose"
            else:
                info.reason = pose_problem(c2w)
                info.w2c = None if info.reason else rigid_inverse(c2w)[:3]
            out.append(info)
        return out

    def read_depth(self, info: FrameInfo, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        assert info.depth_path is not None
        png = read_png_u16(info.depth_path)
        return depth_from_png(png, self.opts["max_depth"], self.opts["min_depth"])
