"""RealEstate10K: camera files plus frames extracted from the videos.

Each camera-file line after the URL is `timestamp_us fx fy cx cy 0 0` followed by a row-major
3×4 OpenCV world-to-camera matrix; `fx, cx` are normalised by the image width and `fy, cy` by
the height, so K is built from the size of the extracted frames. Units are per-sequence SLAM
units. A sequence whose image count differs from its camera-line count is skipped with reason
`missing_frames`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, ClassVar

import numpy as np

from avggt_bench.data.base import BaseLoader, FrameError, FrameInfo
from avggt_bench.data.cameras import intrinsics, pose_problem
from avggt_bench.errors import DataError

__all__ = ["Re10kLoader", "parse_camera_file"]


def parse_camera_file(text: str, where: str = "camera file") -> tuple[str, np.ndarray]:
    """(video URL, `[N, 19]` float64 rows) of a RealEstate10K camera file."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{where} is empty")
    rows = []
    for number, line in enumerate(lines[1:], 2):
        tok = line.split()
        if len(tok) != 19:
            raise DataError(f"{where}:{number}: {len(tok)} numbers, expected 19")
        try:
            rows.append([float(v) for v in tok])
        except ValueError as exc:
            raise DataError(f"{where}:{number}: {exc}") from exc
    return lines[0].strip(), np.array(rows, dtype=np.float64).reshape(-1, 19)


def re10k_intrinsics(row: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """K = [[W·fx, 0, W·cx], [0, H·fy, H·cy], [0, 0, 1]] for a frame of size (H, W)."""
    h, w = hw
    fx, fy, cx, cy = row[1:5]
    return intrinsics(w * fx, h * fy, w * cx, h * cy)


class Re10kLoader(BaseLoader):
    name = "re10k"
    section = "RealEstate10K"
    metric = False
    native_unit = "slam"
    splits = ("test", "train")
    options: ClassVar[dict[str, Any]] = {"image_ext": ".png"}
    layout = """\
<root>/
  metadata/test/<16-hex-id>.txt       camera files (metadata/train/ likewise)
  <16-hex-id>/images/0000.png ...     one frame per camera line, in line order"""

    def _camera_file(self, sequence: str):
        return self.root / "metadata" / self.split / f"{sequence}.txt"

    def sequences(self) -> list[str]:
        folder = self.root / "metadata" / self.split
        if not folder.is_dir():
            raise self.missing(folder, "camera-file folder")
        return sorted(p.stem for p in folder.glob("*.txt"))

    def has_sequence(self, sequence: str) -> bool:
        return self._camera_file(sequence).is_file() and (self.root / sequence / "images").is_dir()

    @cache  # noqa: B019
    def _rows(self, sequence: str) -> np.ndarray:
        path = self._camera_file(sequence)
        if not path.is_file():
            raise self.missing(path, f"camera file of {sequence}")
        return parse_camera_file(path.read_text(), str(path))[1]

    @cache  # noqa: B019
    def native_frame_ids(self, sequence: str) -> list[int]:
        rows = self._rows(sequence)
        images = self.root / sequence / "images"
        count = len(list(images.glob(f"*{self.opts['image_ext']}"))) if images.is_dir() else 0
        if count != len(rows):
            raise FrameError(
                f"{images}: {count} extracted frames for {len(rows)} camera lines; extract "
                "one frame per line (datasets/README.md, section 'RealEstate10K')",
                "missing_frames",
            )
        return [int(t) for t in rows[:, 0]]

    def frame_infos(self, sequence: str, indices: Sequence[int]) -> list[FrameInfo]:
        rows = self._rows(sequence)
        ext = self.opts["image_ext"]
        out = []
        for i in indices:
            row = rows[i]
            w2c = row[7:19].reshape(3, 4).copy()
            info = FrameInfo(
                index=i,
                frame_id=int(row[0]),
                image_path=self.root / sequence / "images" / f"{i:04d}{ext}",
                w2c=w2c,
                intrinsics_for=lambda hw, row=row: re10k_intrinsics(row, hw),
                timestamp=row[0] / 1e6,
                reason=pose_problem(w2c),
            )
            out.append(info)
        return out
