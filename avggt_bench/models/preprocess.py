"""Model input preprocessing: the official VGGT loader (crop / pad) and π³'s pixel-budget loader.

`preprocess` turns decoded views (uint8 `[S, H, W, 3]`, arrays, PIL images or file paths) into the
float32 `[S, 3, H, W]` tensor in [0, 1] a model takes, and records per view a `ViewTransform` so
that ground-truth intrinsics can follow the resize / crop / pad.

* `crop` and `pad` reproduce `vggt/utils/load_fn.py::load_and_preprocess_images` bit for bit at
  `size=518`: PIL BICUBIC resize (default reducing_gap), uint8 → float32 / 255,
  centre row crop (crop) or white padding to a square (pad), and white padding of mixed sizes to
  the largest H and W (only with `allow_mixed_sizes=True`).
* `pi3_budget` reproduces yyfz/Pi3 `pi3/utils/basic.py::load_images_as_tensor`: the target size
  comes from the FIRST image under a pixel budget, LANCZOS resize, no crop or pad.
"""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from avggt_bench.data.images import (
    PROGRESS_MIN_IMAGES,
    default_workers,
    load_image,
    size_mismatch_message,
    to_rgb,
)
from avggt_bench.errors import ConfigError, DataError
from avggt_bench.progress import progress as progress_bar

__all__ = [
    "MODES",
    "PreprocessConfig",
    "Preprocessed",
    "ViewTransform",
    "preprocess",
    "target_size",
]

MODES = ("crop", "pad", "pi3_budget")
_RESAMPLE = {
    "crop": Image.Resampling.BICUBIC,
    "pad": Image.Resampling.BICUBIC,
    "pi3_budget": Image.Resampling.LANCZOS,
}
_PAD_VALUE = 1.0  # white, as the official VGGT loader pads


@dataclass(frozen=True)
class PreprocessConfig:
    """How images become model input.

    mode: "crop" (VGGT default: width `size`, centre-crop taller images to `size` rows), "pad"
        (VGGT: longer side `size`, pad with white to `size`×`size`), or "pi3_budget" (π³ demo:
        at most `pixel_limit` pixels, aspect kept, target from the first image).
    size: target width (crop) or longer side (pad); a positive multiple of `patch_size`.
    pixel_limit: pixel budget of "pi3_budget".
    allow_mixed_sizes: accept images of different sizes (padded with white to the largest H and W,
        as the official VGGT loader does) instead of raising DataError.
    patch_size: the model's patch size (14 for VGGT and π³).
    """

    mode: str = "crop"
    size: int = 518
    pixel_limit: int = 255000
    allow_mixed_sizes: bool = False
    patch_size: int = 14

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(
                f"unknown preprocess.mode {self.mode!r}; valid modes: {', '.join(MODES)}"
            )
        p = self.patch_size
        if isinstance(p, bool) or not isinstance(p, int) or p <= 0:
            raise ConfigError(f"preprocess.patch_size must be a positive integer, got {p!r}")
        s = self.size
        if isinstance(s, bool) or not isinstance(s, int) or s <= 0 or s % p != 0:
            if isinstance(s, int | float) and not isinstance(s, bool) and s > 0:
                lower = int(s // p) * p
                options = [v for v in (lower, lower + p) if v > 0 and v != s]
                hint = " or ".join(str(v) for v in options)
            else:
                hint = f"{p} or another positive multiple of {p}"
            raise ConfigError(
                f"preprocess.size={s!r} is not a positive multiple of patch_size={p}: the patch "
                f"grid needs H and W to be multiples of {p}; use e.g. {hint} "
                f"(518 is the official VGGT size)"
            )
        lim = self.pixel_limit
        if isinstance(lim, bool) or not isinstance(lim, int) or lim < p * p:
            raise ConfigError(
                f"preprocess.pixel_limit={lim!r} must be an integer >= patch_size² = {p * p} "
                "(π³'s default is 255000)"
            )
        if not isinstance(self.allow_mixed_sizes, bool):
            raise ConfigError(
                "preprocess.allow_mixed_sizes must be true or false, "
                f"got {self.allow_mixed_sizes!r}"
            )


@dataclass
class ViewTransform:
    """What preprocessing did to one view (all sizes are (H, W), offsets (y, x), in pixels).

    src_hw: size of the input image. resized_hw: size right after the resize. crop_offset_yx:
    top-left corner of the kept window in the resized image ((0, 0) when nothing was cropped).
    pad: (top, bottom, left, right) white padding added around the kept window (mode "pad" and
    mixed-size padding together). out_hw: size of the model input.
    """

    src_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    crop_offset_yx: tuple[int, int]
    pad: tuple[int, int, int, int]
    out_hw: tuple[int, int]

    @property
    def scale_xy(self) -> tuple[float, float]:
        """(sx, sy) = (W'/W, H'/H) of the resize."""
        return (
            self.resized_hw[1] / self.src_hw[1],
            self.resized_hw[0] / self.src_hw[0],
        )

    @property
    def content_box_xyxy(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the image content (not padding) in the model input, end-exclusive."""
        top, bottom, left, right = self.pad
        return (left, top, self.out_hw[1] - right, self.out_hw[0] - bottom)

    def map_pixels(self, uv: torch.Tensor) -> torch.Tensor:
        """Map pixel coordinates `[..., 2]` (u = x, v = y; pixel centres at integers) of the input
        image to the model input, with the same convention as `apply_to_intrinsics`."""
        sx, sy = self.scale_xy
        out = uv.clone()
        out[..., 0] = sx * (uv[..., 0] + 0.5) - 0.5 - self.crop_offset_yx[1] + self.pad[2]
        out[..., 1] = sy * (uv[..., 1] + 0.5) - 0.5 - self.crop_offset_yx[0] + self.pad[0]
        return out

    def apply_to_intrinsics(self, K: torch.Tensor) -> torch.Tensor:
        """Intrinsics `[..., 3, 3]` of the input image → intrinsics valid for the model input.

        Resize (W, H) → (W', H'): sx = W'/W, sy = H'/H; fx' = sx·fx, cx' = sx·(cx + 0.5) − 0.5
        (likewise y; a skew term scales with sx); crop: cx' −= ox, cy' −= oy; padding:
        cx' += pad_left, cy' += pad_top. Pixel centres are at integer coordinates.
        """
        if K.shape[-2:] != (3, 3):
            raise DataError(f"intrinsics must be [..., 3, 3], got {tuple(K.shape)}")
        sx, sy = self.scale_xy
        oy, ox = self.crop_offset_yx
        top, _, left, _ = self.pad
        out = K.clone()
        out[..., 0, 0] = sx * K[..., 0, 0]
        out[..., 0, 1] = sx * K[..., 0, 1]
        out[..., 1, 1] = sy * K[..., 1, 1]
        out[..., 0, 2] = sx * (K[..., 0, 2] + 0.5) - 0.5 - ox + left
        out[..., 1, 2] = sy * (K[..., 1, 2] + 0.5) - 0.5 - oy + top
        return out


@dataclass
class Preprocessed:
    """Model input `images` float32 `[S, 3, H, W]` in [0, 1], one `ViewTransform` per view."""

    images: torch.Tensor
    transforms: list[ViewTransform] = field(default_factory=list)
    mode: str = "crop"

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def apply_to_intrinsics(self, K: torch.Tensor) -> torch.Tensor:
        """Per-view intrinsics `[S, 3, 3]` of the input images → intrinsics of the model input."""
        if K.dim() != 3 or K.shape[0] != len(self.transforms):
            raise DataError(
                f"intrinsics must be [S, 3, 3] with S = {len(self.transforms)}, "
                f"got {tuple(K.shape)}"
            )
        return torch.stack([t.apply_to_intrinsics(k) for t, k in zip(self.transforms, K)])


# ----------------------------------------------------------------------------------------------
# target sizes


def _pi3_budget_size(width: int, height: int, limit: int, p: int) -> tuple[int, int]:
    """π³'s pixel-budget target size, in Python floats, Python round (ties to even).

    Scale the first image to `limit` pixels, round each side to a multiple of `p`, then shrink
    the side that overshoots the aspect ratio until the product fits the budget
    (yyfz/Pi3 `pi3/utils/basic.py::load_images_as_tensor`).
    """
    scale = math.sqrt(limit / (width * height))
    w_t = width * scale
    h_t = height * scale
    k = round(w_t / p)
    m = round(h_t / p)
    while (k * p) * (m * p) > limit:
        if k / m > w_t / h_t:
            k -= 1
        else:
            m -= 1
    return p * max(1, k), p * max(1, m)


def target_size(width: int, height: int, cfg: PreprocessConfig) -> tuple[int, int]:
    """(new_w, new_h) an input of `width`×`height` is resized to, before any crop or pad.

    crop: `new_w = size`, `new_h = round(height * (size / width) / p) * p`; pad: the same when
    width >= height, else `new_h = size`, `new_w = round(width * (size / height) / p) * p`;
    evaluated left to right in Python floats with Python `round`, as the official loader does.
    pi3_budget: the π³ pixel-budget rule (`_pi3_budget_size`). The result can be 0 for extremely
    elongated inputs in crop/pad mode (the official loader would fail on it; `preprocess` raises).
    """
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise DataError(f"image size {width}x{height} (W x H) is empty")
    p = cfg.patch_size
    if cfg.mode == "pi3_budget":
        return _pi3_budget_size(width, height, cfg.pixel_limit, p)
    size = cfg.size
    if cfg.mode == "pad" and width < height:
        return round(width * (size / height) / p) * p, size
    return size, round(height * (size / width) / p) * p


# ----------------------------------------------------------------------------------------------
# preprocessing


def _is_path(x: Any) -> bool:
    return isinstance(x, str | os.PathLike)


def _source_size_hw(x: Any) -> tuple[int, int]:
    if isinstance(x, Image.Image):
        return x.size[1], x.size[0]
    return int(x.shape[0]), int(x.shape[1])


def _check_array(arr: np.ndarray, index: int) -> np.ndarray:
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise DataError(
            f"image {index} must be uint8 [H, W, 3] RGB, got {arr.dtype} {tuple(arr.shape)}; "
            "decode files with avggt_bench.data.images.load_image"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"image {index} is empty ({tuple(arr.shape)})")
    return arr


def _as_sources(images: Any) -> list[Any]:
    """Split the input into per-view items: uint8 HxWx3 arrays, PIL images or paths."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4 or images.shape[-1] != 3 or images.dtype != torch.uint8:
            raise DataError(
                f"images must be a uint8 [S, H, W, 3] tensor, got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        arr = images.detach().cpu().contiguous().numpy()
        return list(arr)
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            raise DataError(
                "got a single [H, W, 3] array; pass a list of views or a [S, H, W, 3] array"
            )
        return list(images)
    if _is_path(images) or isinstance(images, Image.Image):
        raise DataError("got a single image; pass a list of views (paths, arrays or PIL images)")
    items = list(images)
    out = []
    for i, x in enumerate(items):
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        if isinstance(x, np.ndarray):
            out.append(_check_array(x, i))
        elif isinstance(x, Image.Image) or _is_path(x):
            out.append(x)
        else:
            raise DataError(
                f"image {i} has unsupported type {type(x).__name__}; pass uint8 [H, W, 3] arrays, "
                "PIL images or file paths"
            )
    return out


def _decode(x: Any, composite_alpha: bool) -> np.ndarray | Image.Image:
    """Item → uint8 RGB array or RGB PIL image (files decoded, modes converted)."""
    if _is_path(x):
        return load_image(Path(x), composite_alpha=composite_alpha)
    if isinstance(x, Image.Image):
        try:
            x.load()
            return to_rgb(x, composite_alpha=composite_alpha)
        except Exception as exc:
            raise DataError(
                f"cannot decode PIL image ({type(exc).__name__}: {exc}); the source file is "
                "truncated or corrupt: re-download/re-extract the dataset, or remove the file "
                "from the frame list"
            ) from exc
    return x


def _resize_crop(
    src: np.ndarray | Image.Image, cfg: PreprocessConfig, new_wh: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int, int, int]]:
    """Resize one decoded image, then crop (crop mode) or compute the square pad (pad mode).

    Returns the kept uint8 content `[h, w, 3]`, the crop offset (y, x) and the pad
    (top, bottom, left, right) of the mode (before any mixed-size padding).
    """
    img = src if isinstance(src, Image.Image) else Image.fromarray(np.ascontiguousarray(src))
    if img.mode != "RGB":  # arrays are RGB by contract; guard against odd PIL inference
        img = img.convert("RGB")
    if img.size != new_wh:  # PIL returns an identical copy for an unchanged size
        img = img.resize(new_wh, _RESAMPLE[cfg.mode])
    arr = np.array(img, dtype=np.uint8)  # writable copy: torch.from_numpy wants one
    new_w, new_h = new_wh
    offset = (0, 0)
    pad = (0, 0, 0, 0)
    if cfg.mode == "crop" and new_h > cfg.size:
        start = (new_h - cfg.size) // 2
        arr = arr[start : start + cfg.size]
        offset = (start, 0)
    elif cfg.mode == "pad":
        h_pad = cfg.size - new_h
        w_pad = cfg.size - new_w
        if h_pad > 0 or w_pad > 0:
            top, left = h_pad // 2, w_pad // 2
            pad = (top, h_pad - top, left, w_pad - left)
    return arr, offset, pad


def _run(fn: Any, items: list[Any], workers: int) -> list[Any]:
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="avggt-prep") as pool:
        return list(pool.map(fn, items))


def preprocess(
    images: Any,
    cfg: PreprocessConfig = PreprocessConfig(),  # frozen, so a shared default is safe
    *,
    workers: int | None = None,
    progress: bool | None = None,
) -> Preprocessed:
    """Views → model input float32 `[S, 3, H, W]` in [0, 1] plus per-view transforms.

    `images`: a uint8 `[S, H, W, 3]` tensor (e.g. `Scene.images`), or a sequence of uint8
    `[H, W, 3]` arrays, PIL images or file paths. Files are decoded with `load_image`; PIL images
    are converted the same way (an "RGBA" image is composited onto white in crop/pad mode; in
    pi3_budget mode alpha is dropped, as π³'s loader does).

    `workers`: threads for decoding/resizing (default one per core, at most 16). `progress`: a bar
    from `avggt_bench.progress` (shown on a TTY or with AVGGT_PROGRESS=1); default: only when
    decoding >= 64 files; False: never.
    """
    if not isinstance(cfg, PreprocessConfig):
        raise ConfigError(f"cfg must be a PreprocessConfig, got {type(cfg).__name__}")
    if images is None:
        raise DataError("the scene has no images (got None); check the frame selection")
    sources = _as_sources(images)
    n = len(sources)
    if n == 0:
        raise DataError("the scene has no images; check the frame selection and dataset root")
    n_workers = default_workers(n) if workers is None else max(1, int(workers))
    composite = cfg.mode != "pi3_budget"
    p = cfg.patch_size

    has_files = any(_is_path(x) for x in sources)
    if not has_files and not cfg.allow_mixed_sizes:  # sizes known without decoding: fail early
        early = size_mismatch_message([_source_size_hw(x) for x in sources])
        if early is not None:
            raise DataError(early)
    bar = None
    if progress if progress is not None else (has_files and n >= PROGRESS_MIN_IMAGES):
        bar = progress_bar(total=n, desc="preprocessing images", unit="img")

    # pi3_budget: one target for all views, from the first image
    fixed_wh: tuple[int, int] | None = None
    if cfg.mode == "pi3_budget":
        sources[0] = _decode(sources[0], composite)
        h0, w0 = _source_size_hw(sources[0])
        fixed_wh = target_size(w0, h0, cfg)

    def one(x: Any) -> tuple[tuple[int, int], tuple[int, int], np.ndarray, tuple, tuple]:
        src = _decode(x, composite)
        src_hw = _source_size_hw(src)
        new_wh = fixed_wh if fixed_wh is not None else target_size(src_hw[1], src_hw[0], cfg)
        if new_wh[0] <= 0 or new_wh[1] <= 0:
            raise DataError(
                f"image of size {src_hw[1]}x{src_hw[0]} (W x H) is too elongated: mode "
                f"{cfg.mode!r} with size {cfg.size} would resize it to {new_wh[0]}x{new_wh[1]}; "
                "crop it to a less extreme aspect ratio or drop it from the frame list"
            )
        content, offset, pad = _resize_crop(src, cfg, new_wh)
        if bar is not None:
            bar.update(1)
        return src_hw, (new_wh[1], new_wh[0]), content, offset, pad

    try:
        results = _run(one, sources, n_workers)
    finally:
        if bar is not None:
            bar.close()
    del sources

    src_sizes = [r[0] for r in results]
    mixed = size_mismatch_message(src_sizes)
    if mixed is not None and not cfg.allow_mixed_sizes:
        raise DataError(mixed)

    content_hw = [
        (r[2].shape[0] + r[4][0] + r[4][1], r[2].shape[1] + r[4][2] + r[4][3]) for r in results
    ]
    out_h = max(hw[0] for hw in content_hw)
    out_w = max(hw[1] for hw in content_hw)
    if mixed is not None or len(set(content_hw)) > 1:
        src_list = ", ".join(f"{w}x{h}" for h, w in sorted(set(src_sizes)))
        shapes = sorted(set(content_hw))
        if len(shapes) > 1:
            shape_list = ", ".join(f"{w}x{h}" for h, w in shapes)
            action = (
                f"they preprocess to {len(shapes)} shapes ({shape_list}) and are padded with "
                f"white to {out_w}x{out_h} as the official VGGT loader does"
            )
        else:
            action = f"they all preprocess to {out_w}x{out_h}"
        warnings.warn(
            f"preprocess: the scene mixes image sizes ({src_list}, W x H); {action}",
            UserWarning,
            stacklevel=2,
        )
    if out_h % p or out_w % p:
        raise DataError(
            f"preprocessed images are {out_w}x{out_h} (W x H), not multiples of the patch size "
            f"{p}; set preprocess.size to a multiple of {p} (e.g. 518) or resize the inputs"
        )

    transforms: list[ViewTransform] = []
    for (src_hw, resized_hw, _content, offset, pad), (ch, cw) in zip(results, content_hw):
        extra_h, extra_w = out_h - ch, out_w - cw
        top, left = extra_h // 2, extra_w // 2
        full_pad = (pad[0] + top, pad[1] + extra_h - top, pad[2] + left, pad[3] + extra_w - left)
        transforms.append(ViewTransform(src_hw, resized_hw, offset, full_pad, (out_h, out_w)))

    # uint8 → float32 / 255 (torchvision ToTensor), written into a white canvas
    # (filled per view, in the worker threads: touching ~GBs of fresh memory is costly)
    out = torch.empty((n, 3, out_h, out_w), dtype=torch.float32)

    def write(i: int) -> None:
        content = results[i][2]
        top, bottom, left, right = transforms[i].pad
        if top or bottom or left or right:
            out[i].fill_(_PAD_VALUE)
        h, w = content.shape[:2]
        view = out[i, :, top : top + h, left : left + w]
        view.copy_(torch.from_numpy(np.ascontiguousarray(content)).permute(2, 0, 1))
        view.div_(255)

    _run(write, list(range(n)), n_workers)
    return Preprocessed(images=out, transforms=transforms, mode=cfg.mode)
