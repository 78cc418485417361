"""CO3Dv2: pose-evaluation annotations, PyTorch3D NDC cameras → OpenCV.

The sequences of a category and their frame order come from the prepared `<category>_<split>.jgz`
(gzipped JSON `{sequence: [{filepath, R, T, focal_length, principal_point}, ...]}` in set-list
order; `prepare co3d` writes it, and the copies VGGT / π³ / PoseDiffusion use are accepted).
Cameras: `R_cv = D·Rᵀ`, `t_cv = D·T`, D = diag(−1, −1, 1); K by the isotropic NDC rule from the
decoded image size. With `load_depth` the category's `frame_annotations.jgz` supplies the depth
path, `scale_adjustment`, depth mask and the `intrinsics_format` (v1 formats dispatch per axis).
Depth PNGs hold float16 bit patterns. Units are the SfM units of T.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from avggt_bench.data.base import BaseLoader, FrameError, FrameInfo
from avggt_bench.data.cameras import co3d_intrinsics, pose_problem, pytorch3d_to_opencv
from avggt_bench.data.readers import read_png_u16
from avggt_bench.errors import DataError

__all__ = ["Co3dLoader", "decode_depth_png", "exclusion_reason", "read_jgz"]

MIN_FRAMES = 50
MAX_T_SUM = 1e5


def read_jgz(path: Path) -> Any:
    try:
        with gzip.open(path, "rt", encoding="utf8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"annotation file not found: {path}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not gzipped JSON ({exc}); re-download or re-prepare") from exc


def exclusion_reason(entries: Sequence[dict[str, Any]]) -> str | None:
    """VGGT/π³ exclusions: fewer than 50 frames, or any signed `T[0]+T[1]+T[2] > 1e5`."""
    if len(entries) < MIN_FRAMES:
        return "too_few_frames"
    if any(sum(float(v) for v in e["T"]) > MAX_T_SUM for e in entries):
        return "bad_translation"
    return None


def decode_depth_png(png: np.ndarray, scale_adjustment: float) -> np.ndarray:
    """uint16 PNG holding float16 bits → float32 depth × `scale_adjustment`."""
    return np.ascontiguousarray(png, dtype=np.uint16).view(np.float16).astype(
        np.float32
    ) * np.float32(scale_adjustment)


def _frame_number(filepath: str) -> int | str:
    m = re.search(r"(\d+)\.\w+$", filepath)
    return int(m.group(1)) if m else Path(filepath).stem


class Co3dLoader(BaseLoader):
    name = "co3d"
    section = "CO3Dv2"
    metric = False
    native_unit = "sfm"
    has_depth = True
    splits = ("test", "train")
    options: ClassVar[dict[str, Any]] = {"annotations": None}
    layout = """\
<root>/
  <category>/frame_annotations.jgz  sequence_annotations.jgz  set_lists/  <sequence>/images/...
  annotations/<category>_test.jgz   prepared pose-evaluation annotations (prepare co3d),
                                    or the folder named by dataset.annotations"""

    @property
    def annotation_dir(self) -> Path:
        return Path(self.opts["annotations"] or self.root / "annotations").expanduser()

    def categories(self) -> list[str]:
        folder = self.annotation_dir
        if not folder.is_dir():
            raise self.missing(folder, "pose-evaluation annotation folder")
        suffix = f"_{self.split}.jgz"
        return sorted(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))

    @cache  # noqa: B019
    def _category(self, category: str) -> dict[str, list[dict[str, Any]]]:
        path = self.annotation_dir / f"{category}_{self.split}.jgz"
        if not path.is_file():
            raise self.missing(path, f"annotations of category {category!r}")
        data = read_jgz(path)
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected {{sequence: [frames]}}, got {type(data).__name__}")
        return data

    @cache  # noqa: B019
    def _owner(self) -> dict[str, str]:
        """sequence → category over every category present (names are globally unique)."""
        return {seq: cat for cat in self.categories() for seq in self._category(cat)}

    def sequences(self) -> list[str]:
        return [s for cat in self.categories() for s in sorted(self._category(cat))]

    def expand(self, keys: Sequence[str]) -> list[tuple[str | None, list[str]]]:
        """Category names → (category, its sequences sorted by name); sequence names pass."""
        out: list[tuple[str | None, list[str]]] = []
        present = set(self.categories())
        for key in keys:
            if key in present:
                out.append((key, sorted(self._category(key))))
            elif key in self._owner():
                out.append((self._owner()[key], [key]))
            else:
                out.append((key, []))  # a category without annotations: nothing to evaluate
        return out

    def has_sequence(self, sequence: str) -> bool:
        return sequence in self._owner()

    def category(self, sequence: str) -> str | None:
        return self._owner().get(sequence)

    def _entries(self, sequence: str) -> list[dict[str, Any]]:
        cat = self.category(sequence)
        if cat is None:
            raise DataError(f"CO3D sequence {sequence!r} is in no {self.split} annotation file")
        return self._category(cat)[sequence]

    def native_frame_ids(self, sequence: str) -> list[int | str]:
        return [_frame_number(e["filepath"]) for e in self._entries(sequence)]

    def exclusion(self, sequence: str) -> str | None:
        return exclusion_reason(self._entries(sequence))

    @cache  # noqa: B019
    def _frame_annotations(self, category: str) -> dict[str, dict[str, Any]]:
        path = self.root / category / "frame_annotations.jgz"
        if not path.is_file():
            raise self.missing(path, f"frame annotations of {category!r} (needed for depth)")
        return {fa["image"]["path"]: fa for fa in read_jgz(path)}

    def frame_infos(self, sequence: str, indices: Sequence[int]) -> list[FrameInfo]:
        entries = self._entries(sequence)
        full = self._frame_annotations(self.category(sequence)) if self.load_depth else None
        out = []
        for i in indices:
            e = entries[i]
            info = FrameInfo(index=i, frame_id=_frame_number(e["filepath"]))
            info.image_path = self.root / e["filepath"]
            try:
                rot = np.asarray(e["R"], dtype=np.float64)
                trans = np.asarray(e["T"], dtype=np.float64)
                info.w2c = pytorch3d_to_opencv(rot, trans)
                info.reason = pose_problem(info.w2c)
            except (KeyError, ValueError, TypeError):
                info.reason = "corrupt_pose"
            focal, pp = e.get("focal_length"), e.get("principal_point")
            fmt, size = "ndc_isotropic", None
            if full is not None:
                fa = full.get(e["filepath"])
                if fa is None:
                    info.reason = info.reason or "missing_annotation"
                else:
                    fmt = fa["viewpoint"].get("intrinsics_format", "ndc_isotropic")
                    size = tuple(fa["image"]["size"])  # [H, W]
                    info.depth_path = self.root / fa["depth"]["path"]
                    info.extra = {
                        "scale_adjustment": float(fa["depth"].get("scale_adjustment", 1.0)),
                        "depth_mask": fa["depth"].get("mask_path"),
                    }

            def k_for(hw, focal=focal, pp=pp, fmt=fmt, size=size):
                return co3d_intrinsics(focal, pp, size or hw, fmt)

            info.intrinsics_for = k_for
            out.append(info)
        return out

    def read_depth(self, info: FrameInfo, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        assert info.depth_path is not None
        d = decode_depth_png(read_png_u16(info.depth_path), info.extra["scale_adjustment"])
        valid = np.isfinite(d) & (d > 0)
        mask_rel = info.extra.get("depth_mask")
        if mask_rel:
            try:
                with Image.open(self.root / mask_rel) as img:
                    img.load()
                    mask = np.asarray(img)
            except FileNotFoundError:
                raise FrameError(
                    f"depth mask not found: {self.root / mask_rel}", "missing_file"
                ) from None
            except Exception as exc:
                raise FrameError(
                    f"cannot decode depth mask {mask_rel}: {exc}", "corrupt_mask"
                ) from exc
            if mask.ndim == 3:
                mask = mask[..., 0]
            if mask.shape != d.shape:
                raise FrameError(
                    f"depth mask {mask_rel} is {mask.shape}, depth {d.shape}", "size_mismatch"
                )
            valid &= mask != 0
        if d.shape != hw:
            raise FrameError(
                f"{info.depth_path}: depth {d.shape} differs from the image {hw}; the harness "
                "does not resample CO3D depth",
                "size_mismatch",
            )
        return np.where(valid, d, np.float32(0)).astype(np.float32), valid
