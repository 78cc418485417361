"""TUM RGB-D (dynamic objects) trajectories.

The native frame list of a sequence is the timestamp association of `rgb.txt` with
`groundtruth.txt` (the TUM `associate` rule: candidate pairs within 0.02 s, accepted greedily
by increasing time difference, each timestamp used once, sorted by RGB time); the preset then
takes `[::3][:90]`. Ground truth lines are `timestamp tx ty tz qx qy qz qw` (scalar last), the
camera-to-world pose of the colour camera. `Scene.timestamps` are the ground-truth times.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from avggt_bench.data.base import BaseLoader, FrameInfo
from avggt_bench.data.cameras import intrinsics, pose_problem, quat_to_rotmat, rigid_inverse, to_4x4
from avggt_bench.errors import DataError

__all__ = ["TUM_K", "TumLoader", "associate", "read_timestamped"]

TUM_K = {
    "freiburg1": intrinsics(517.3, 516.5, 318.6, 255.3),
    "freiburg2": intrinsics(520.9, 521.0, 325.1, 249.7),
    "freiburg3": intrinsics(535.4, 539.2, 320.1, 247.6),
}
"""Colour intrinsics at 640×480 (TUM calibration; fr1/fr2 images also carry distortion)."""


def read_timestamped(path: Path) -> dict[float, list[str]]:
    """A TUM list file (`timestamp data…` per line, `#` comments) as {timestamp: data}."""
    out: dict[float, list[str]] = {}
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    for number, line in enumerate(text.splitlines(), 1):
        tok = line.replace(",", " ").split()
        if not tok or tok[0].startswith("#"):
            continue
        try:
            out[float(tok[0])] = tok[1:]
        except ValueError as exc:
            raise DataError(f"{path}:{number}: bad timestamp {tok[0]!r}") from exc
    return out


def associate(
    first: Sequence[float], second: Sequence[float], max_difference: float = 0.02
) -> list[tuple[float, float]]:
    """TUM `associate.py`: greedy unique matching of timestamps, sorted by the first stamp."""
    seconds = sorted(second)
    candidates = []
    for a in first:  # only stamps within the window can pair (bisect instead of all pairs)
        lo = bisect.bisect_left(seconds, a - max_difference)
        hi = bisect.bisect_right(seconds, a + max_difference)
        candidates += [(abs(a - b), a, b) for b in seconds[lo:hi] if abs(a - b) < max_difference]
    candidates.sort()
    used_a: set[float] = set()
    used_b: set[float] = set()
    matches = []
    for _, a, b in candidates:
        if a in used_a or b in used_b:
            continue
        used_a.add(a)
        used_b.add(b)
        matches.append((a, b))
    return sorted(matches)


class TumLoader(BaseLoader):
    name = "tum"
    section = "TUM RGB-D (dynamic objects)"
    splits = ("all",)
    options: ClassVar[dict[str, Any]] = {"max_difference": 0.02}
    layout = """\
<root>/rgbd_dataset_freiburg3_<name>/
  rgb/<timestamp>.png   depth/<timestamp>.png    640x480
  rgb.txt  depth.txt                             "timestamp filename", '#' header lines
  groundtruth.txt                                "timestamp tx ty tz qx qy qz qw" (c2w)
  rgb_90/<timestamp>.png                         optional prepared subset (checked if present)"""

    def sequences(self) -> list[str]:
        found = sorted(p.name for p in self.root.iterdir() if p.name.startswith("rgbd_dataset_"))
        if not found:
            raise self.missing(self.root / "rgbd_dataset_freiburg3_walking_xyz", "sequences")
        return found

    def has_sequence(self, sequence: str) -> bool:
        return (self.root / sequence / "rgb.txt").is_file()

    @cache  # noqa: B019
    def _matches(self, sequence: str) -> list[tuple[float, float, str, list[str]]]:
        folder = self.root / sequence
        for name in ("rgb.txt", "groundtruth.txt"):
            if not (folder / name).is_file():
                raise self.missing(folder / name, f"{name} of {sequence}")
        rgb = read_timestamped(folder / "rgb.txt")
        gt = read_timestamped(folder / "groundtruth.txt")
        pairs = associate(list(rgb), list(gt), float(self.opts["max_difference"]))
        return [(a, b, rgb[a][0], gt[b]) for a, b in pairs]

    def native_frame_ids(self, sequence: str) -> list[str]:
        return [Path(m[2]).stem for m in self._matches(sequence)]

    def frame_infos(self, sequence: str, indices: Sequence[int]) -> list[FrameInfo]:
        matches = self._matches(sequence)
        fr = next((k for k in TUM_K if k in sequence), "freiburg3")
        out = []
        for i in indices:
            a, b, rgb_file, pose = matches[i]
            info = FrameInfo(
                index=i,
                frame_id=Path(rgb_file).stem,
                image_path=self.root / sequence / rgb_file,
                K=TUM_K[fr],
                timestamp=b,
                extra={"rgb_timestamp": a},
            )
            try:
                vals = np.array([float(v) for v in pose[:7]])
                if len(vals) != 7:
                    raise ValueError("need 7 numbers")
            except ValueError:
                info.reason = "corrupt_pose"
            else:
                c2w = to_4x4(np.concatenate((quat_to_rotmat(vals[3:], "xyzw"), vals[:3, None]), 1))
                info.reason = pose_problem(c2w)
                info.w2c = None if info.reason else rigid_inverse(c2w)[:3]
            out.append(info)
        return out

    def load(self, sequence: str, frame_ids: Sequence[int] | None = None, **kwargs: Any):
        scene = super().load(sequence, frame_ids, **kwargs)
        subset = self.root / sequence / "rgb_90"
        if subset.is_dir() and frame_ids is not None:
            names = sorted(p.name for p in subset.iterdir())
            ours = sorted(Path(p).name for p in scene.image_paths or [])
            if len(names) == len(ours) and names != ours:
                raise DataError(
                    f"{subset} holds other frames than the association selects (first "
                    f"difference: {next(a for a, b in zip(names, ours) if a != b)}); delete it "
                    "and rerun `python -m avggt_bench.data.prepare tum`"
                )
        return scene
