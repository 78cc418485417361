"""Model input preprocessing: the official VGGT loader (crop / pad) and π³'s pixel-budget loader.

`preprocess` turns decoded views (uint8 `[S, H, W, 3]`, arrays, PIL images or file paths) into the
float32 `[S, 3, H, W]` tensor in [0, 1] a model takes, and records per view a `ViewTransform` so
that ground-truth intrinsics can follow the resize / crop / pad (the config, target sizes and
transforms are in `models/preprocess_geometry.py`).

* `crop` and `pad` reproduce `vggt/utils/load_fn.py::load_and_preprocess_images` bit for bit at
  `size=518`: PIL BICUBIC resize (default reducing_gap), uint8 → float32 / 255,
  centre row crop (crop) or white padding to a square (pad), and white padding of mixed sizes to
  the largest H and W (only with `allow_mixed_sizes=True`).
* `pi3_budget` reproduces yyfz/Pi3 `pi3/utils/basic.py::load_images_as_tensor`: the target size
  comes from the FIRST image under a pixel budget, LANCZOS resize, no crop or pad.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
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
from avggt_bench.models.preprocess_geometry import (
    PreprocessConfig,
    Preprocessed,
    ViewTransform,
    target_size,
)
from avggt_bench.progress import progress as progress_bar

# PreprocessConfig is re-exported: the job builds it and calls preprocess from here.
__all__ = ["PreprocessConfig", "preprocess"]

_RESAMPLE = {
    "crop": Image.Resampling.BICUBIC,
    "pad": Image.Resampling.BICUBIC,
    "pi3_budget": Image.Resampling.LANCZOS,
}
_PAD_VALUE = 1.0  # white, as the official VGGT loader pads


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
    cfg: PreprocessConfig = PreprocessConfig(),  # noqa: B008 (frozen: a shared default is safe)
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
