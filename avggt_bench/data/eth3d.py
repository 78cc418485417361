"""ETH3D high-resolution multi-view training scenes, DSLR.

`variant` selects what is read:
* `pi3` (default) / `exact`: the undistorted images, sparse undistorted depth and per-image
  `.npz` (`intrinsics` = COLMAP values, `extrinsics` = 4×4 w2c) written by `prepare eth3d`
  (`--mode pi3` reproduces π³'s preparation, `--mode exact` the full thin-prism model);
* `distorted`: the original JPEGs with `dslr_calibration_jpg/{cameras,images}.txt` and the
  distorted depth; K ignores the lens distortion (pose-only uses).
K follows COLMAP's half-pixel convention, shifted by −0.5 unless the preset sets the compat
switch `colmap_half_pixel: ignore` (π³). Depth is raw little-endian float32 despite the `.JPG`
name, read with the image's H×W; non-finite or ≤ 0 is invalid.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from avggt_bench.data.base import BaseLoader, FrameError, FrameInfo
from avggt_bench.data.cameras import colmap_intrinsics, pose_problem
from avggt_bench.data.colmap import read_cameras, read_images
from avggt_bench.data.readers import clean_depth, read_raw_float32
from avggt_bench.errors import ConfigError, DataError

__all__ = ["SCENES", "VARIANT_DIRS", "Eth3dLoader"]

SCENES = (
    "courtyard", "delivery_area", "electro", "facade", "kicker", "meadow", "office", "pipes",
    "playground", "relief", "relief_2", "terrace", "terrains",
)  # fmt: skip
VARIANT_DIRS = {
    "pi3": "custom_undistorted",
    "exact": "exact_undistorted",
    "distorted": "dslr_images",
}


class Eth3dLoader(BaseLoader):
    name = "eth3d"
    section = "ETH3D"
    has_depth = True
    splits = ("train",)
    options: ClassVar[dict[str, Any]] = {"variant": "pi3"}
    layout = """\
<root>/<scene>/                                       13 training scenes
  images/dslr_images/DSC_XXXX.JPG                     distorted originals, 6048x4032
  dslr_calibration_jpg/cameras.txt  images.txt
  ground_truth_depth/dslr_images/DSC_XXXX.JPG         raw float32 depth, metres
  images/custom_undistorted/DSC_XXXX.JPG              prepared (prepare eth3d --mode pi3)
  ground_truth_depth/custom_undistorted/DSC_XXXX.JPG  prepared, raw float32, sparse
  custom_undistorted_cam/DSC_XXXX.npz                 prepared: intrinsics, extrinsics"""

    def __init__(self, root: Any = None, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        if self.opts["variant"] not in VARIANT_DIRS:
            raise ConfigError(
                f"eth3d variant {self.opts['variant']!r}; valid: {', '.join(VARIANT_DIRS)}"
            )
        self.half_pixel = self.compat.get("colmap_half_pixel", "shift")
        self.subdir = VARIANT_DIRS[self.opts["variant"]]

    def sequences(self) -> list[str]:
        found = sorted(p.name for p in self.root.iterdir() if (p / "images").is_dir())
        if not found:
            raise self.missing(self.root / SCENES[0] / "images", "scene folders")
        return found

    def has_sequence(self, sequence: str) -> bool:
        return (self.root / sequence / "images" / self.subdir).is_dir()

    @cache  # noqa: B019
    def _colmap(self, sequence: str) -> tuple[dict[int, Any], dict[str, Any]]:
        calib = self.root / sequence / "dslr_calibration_jpg"
        if not calib.is_dir():
            raise self.missing(calib, f"COLMAP calibration of {sequence}")
        cams = read_cameras(calib / "cameras.txt")
        images = {Path(im.name).name: im for im in read_images(calib / "images.txt")}
        return cams, images

    @cache  # noqa: B019
    def native_frame_ids(self, sequence: str) -> list[str]:
        folder = self.root / sequence / "images" / self.subdir
        if self.opts["variant"] == "distorted":
            return sorted(self._colmap(sequence)[1])
        if not folder.is_dir():
            raise self.missing(
                folder, f"prepared {self.opts['variant']} images of {sequence} (prepare eth3d)"
            )
        names = sorted(p.name for p in folder.iterdir() if p.is_file())
        if not names:
            raise DataError(f"{folder} is empty; rerun `python -m avggt_bench.data.prepare eth3d`")
        return names

    def frame_infos(self, sequence: str, indices: Sequence[int]) -> list[FrameInfo]:
        names = self.native_frame_ids(sequence)
        scene = self.root / sequence
        out = []
        for i in indices:
            name = names[i]
            info = FrameInfo(
                index=i,
                frame_id=name,
                image_path=scene / "images" / self.subdir / name,
                depth_path=scene / "ground_truth_depth" / self.subdir / name,
            )
            if self.opts["variant"] == "distorted":
                cams, images = self._colmap(sequence)
                im = images[name]
                cam = cams[im.camera_id]
                info.w2c, info.K = im.w2c, cam.K(self.half_pixel)
                info.extra = {"camera_model": cam.model, "camera_hw": (cam.height, cam.width)}
            else:
                path = scene / f"{self.subdir}_cam" / f"{Path(name).stem}.npz"
                try:
                    with np.load(path) as npz:
                        k = np.asarray(npz["intrinsics"], dtype=np.float64)
                        w2c = np.asarray(npz["extrinsics"], dtype=np.float64)
                except (OSError, KeyError, ValueError):
                    info.reason = "missing_camera" if not path.is_file() else "corrupt_camera"
                    out.append(info)
                    continue
                info.K = colmap_intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], self.half_pixel)
                info.w2c = w2c[:3, :4]
            info.reason = pose_problem(info.w2c)
            out.append(info)
        return out

    def read_depth(self, info: FrameInfo, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Raw float32 read with the image's H×W; a file of another size is `size_mismatch`."""
        assert info.depth_path is not None
        try:
            size = info.depth_path.stat().st_size
        except FileNotFoundError:
            raise FrameError(f"depth file not found: {info.depth_path}", "missing_file") from None
        if size != hw[0] * hw[1] * 4:
            raise FrameError(
                f"{info.depth_path} has {size} bytes; the {hw[1]}x{hw[0]} image needs a "
                f"{hw[0] * hw[1] * 4}-byte float32 depth map: re-extract the depth archive or "
                "rerun `python -m avggt_bench.data.prepare eth3d`",
                "size_mismatch",
            )
        return clean_depth(read_raw_float32(info.depth_path, hw))
