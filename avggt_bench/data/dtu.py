"""DTU test scans as prepared by Spann3R: MVSNet cams, rendered depth, masks.

Everything is converted from millimetres to metres on read (translations, depth); presets report
in millimetres. Per view: the image is resized to the depth size when they differ (bilinear; the
cam file's K refers to that size); the object mask is binarised at 0.5, resized to the depth size
with nearest neighbour and eroded with a 10×10 all-ones kernel (OpenCV semantics: anchor at the
kernel centre (5, 5), the border never erodes), then multiplied into the depth.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from avggt_bench.data.base import BaseLoader, FrameError, FrameInfo
from avggt_bench.data.cameras import pose_problem
from avggt_bench.data.images import load_image
from avggt_bench.data.readers import read_npy
from avggt_bench.errors import DataError

__all__ = ["TEST_SCANS", "DtuLoader", "erode", "read_mvsnet_cam"]

TEST_SCANS = (
    1,
    4,
    9,
    10,
    11,
    12,
    13,
    15,
    23,
    24,
    29,
    32,
    33,
    34,
    48,
    49,
    62,
    75,
    77,
    110,
    114,
    118,
)
MM = 1000.0


def read_mvsnet_cam(path: Path) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """MVSNet `cam.txt` → (w2c 4×4 in mm, K 3×3, depth range numbers) by token position."""
    try:
        tok = Path(path).read_text().split()
    except FileNotFoundError:
        raise DataError(f"camera file not found: {path}") from None
    if len(tok) < 29 or tok[0] != "extrinsic" or tok[17] != "intrinsic" or len(tok) > 31:
        raise DataError(
            f"{path}: not an MVSNet cam file (want 'extrinsic', 16 numbers, 'intrinsic', 9 "
            f"numbers, then 2-4 depth-range numbers; got {len(tok)} tokens)"
        )
    try:
        ext = np.array([float(v) for v in tok[1:17]]).reshape(4, 4)
        k = np.array([float(v) for v in tok[18:27]]).reshape(3, 3)
        rng = [float(v) for v in tok[27:]]
    except ValueError as exc:
        raise DataError(f"{path}: non-numeric value ({exc})") from exc
    return ext, k, rng


def erode(mask: np.ndarray, size: int = 10) -> np.ndarray:
    """Binary erosion with a size×size all-ones kernel as `cv2.erode` (default anchor and border).

    Output(y, x) is the minimum over rows y − a … y − a + size − 1 (a = size // 2), likewise
    columns; pixels outside the image count as set (OpenCV's default erode border value).
    """
    a = size // 2
    m = np.pad(mask.astype(bool), ((a, size - 1 - a), (a, size - 1 - a)), constant_values=True)
    rows = np.lib.stride_tricks.sliding_window_view(m, size, axis=0).all(axis=-1)
    return np.lib.stride_tricks.sliding_window_view(rows, size, axis=1).all(axis=-1)


class DtuLoader(BaseLoader):
    name = "dtu"
    section = "DTU"
    has_depth = True
    splits = ("test",)
    options: ClassVar[dict[str, Any]] = {"erode_size": 10, "eval_root": None}
    layout = """\
<root>/scan{N}/                        scan1 scan4 ... (no zero padding), 22 test scans
  images/00000000.jpg ... 00000048.jpg
  depths/00000000.npy ...              rendered z-depth, mm
  binary_masks/00000000.png ...        object masks
  cams/00000000_cam.txt ...            MVSNet format, w2c in mm"""

    def scene_meta(self, sequence: str) -> dict[str, Any]:
        """Where the official evaluation kit lives (read by the dtu_overall metric), if set."""
        root = self.opts["eval_root"]
        return {"dtu_eval_root": str(Path(root).expanduser()) if root else None}

    def sequences(self) -> list[str]:
        found = [p.name for p in self.root.iterdir() if re.fullmatch(r"scan\d+", p.name)]
        if not found:
            raise self.missing(self.root / "scan1", "scan folders (scan1, scan4, ...)")
        return sorted(found, key=lambda s: int(s[4:]))

    def has_sequence(self, sequence: str) -> bool:
        return (self.root / sequence / "images").is_dir()

    @cache  # noqa: B019
    def native_frame_ids(self, sequence: str) -> list[int]:
        folder = self.root / sequence / "images"
        if not folder.is_dir():
            raise self.missing(folder, f"images of {sequence}")
        ids = sorted(int(p.stem) for p in folder.iterdir() if re.fullmatch(r"\d{8}", p.stem))
        if ids != list(range(len(ids))):
            raise DataError(f"{folder}: image numbers are not contiguous from 0; re-extract")
        return ids

    def frame_infos(self, sequence: str, indices: Sequence[int]) -> list[FrameInfo]:
        folder = self.root / sequence
        out = []
        for i in indices:
            image = next(iter(sorted((folder / "images").glob(f"{i:08d}.*"))), None)
            info = FrameInfo(
                index=i,
                frame_id=i,
                image_path=image or folder / "images" / f"{i:08d}.jpg",
                depth_path=folder / "depths" / f"{i:08d}.npy",
                extra={"mask": folder / "binary_masks" / f"{i:08d}.png"},
            )
            try:
                ext, k, rng = read_mvsnet_cam(folder / "cams" / f"{i:08d}_cam.txt")
            except DataError:
                info.reason = "corrupt_camera"
            else:
                info.reason = pose_problem(ext)
                w2c = ext[:3].copy()
                w2c[:, 3] /= MM
                info.w2c, info.K = w2c, k
                info.extra["depth_range_mm"] = rng
            out.append(info)
        return out

    def frame_validity(self, sequence: str) -> list[bool]:
        return [
            i.reason is None for i in self.frame_infos(sequence, range(self.num_frames(sequence)))
        ]

    def image_hw(self, info: FrameInfo) -> tuple[int, int]:
        """The depth size (images are resized to it)."""
        assert info.depth_path is not None
        try:
            shape = np.load(info.depth_path, mmap_mode="r").shape
        except FileNotFoundError:
            raise FrameError(f"depth file not found: {info.depth_path}", "missing_file") from None
        except Exception as exc:
            raise FrameError(f"cannot read {info.depth_path}: {exc}", "corrupt_depth") from exc
        if len(shape) != 2:
            raise FrameError(f"{info.depth_path}: depth has shape {shape}", "corrupt_depth")
        return int(shape[0]), int(shape[1])

    def read_image(self, info: FrameInfo) -> np.ndarray:
        assert info.image_path is not None
        img = load_image(info.image_path)
        h, w = self.image_hw(info)
        if img.shape[:2] != (h, w):
            img = np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BILINEAR))
        return img

    def read_depth(self, info: FrameInfo, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        assert info.depth_path is not None
        d = read_npy(info.depth_path).astype(np.float32)
        if d.shape != hw:
            raise FrameError(f"{info.depth_path}: depth is {d.shape}, not {hw}", "size_mismatch")
        mask_path = info.extra["mask"]
        try:
            with Image.open(mask_path) as img:
                img.load()
                m = np.asarray(img.convert("L") if img.mode not in ("L", "1") else img)
        except FileNotFoundError:
            raise FrameError(f"mask file not found: {mask_path}", "missing_file") from None
        except Exception as exc:
            raise FrameError(f"cannot decode mask {mask_path}: {exc}", "corrupt_mask") from exc
        binary = (m.astype(np.float32) / (1.0 if m.dtype == bool else 255.0)) > 0.5
        if binary.shape != hw:
            rows = (np.arange(hw[0]) * binary.shape[0] // hw[0]).clip(0, binary.shape[0] - 1)
            cols = (np.arange(hw[1]) * binary.shape[1] // hw[1]).clip(0, binary.shape[1] - 1)
            binary = binary[rows][:, cols]  # nearest neighbour (cv2.INTER_NEAREST index rule)
        mask = erode(binary, int(self.opts["erode_size"]))
        d = np.where(np.isfinite(d), d, 0.0).astype(np.float32) / np.float32(MM)
        valid = (d > 0) & mask
        return np.where(valid, d, np.float32(0)), valid
