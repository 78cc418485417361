"""Image decoding exactly as the official VGGT loader does it.

`load_image` opens a file with PIL (no EXIF transpose), composites an "RGBA" image onto opaque
white, converts to "RGB" and returns uint8 `[H, W, 3]`. `load_images` decodes many files on a
thread pool (PIL releases the GIL while decoding); `stack_images` turns same-size arrays into the
uint8 `[S, H, W, 3]` tensor that `Scene.images` holds.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avggt_bench.errors import DataError
from avggt_bench.progress import progress as progress_bar

__all__ = [
    "PROGRESS_MIN_IMAGES",
    "default_workers",
    "load_image",
    "load_images",
    "size_mismatch_message",
    "stack_images",
    "to_rgb",
]

PROGRESS_MIN_IMAGES = 64
"""`load_images` shows a progress bar from this many images on (unless told otherwise)."""

_CORRUPT_FIX = "re-download/re-extract the dataset, or remove the file from the frame list"
MIXED_SIZES_FIX = (
    "resize/crop them to one size first, or set preprocess.allow_mixed_sizes=true to pad them "
    "as the official VGGT loader does"
)


def default_workers(n_items: int) -> int:
    """Thread count for decoding or resizing `n_items` images: one per core, at most 16."""
    cores = os.cpu_count() or 1
    return max(1, min(n_items, cores, 16))


def to_rgb(img: Image.Image, composite_alpha: bool = True) -> Image.Image:
    """Convert a PIL image to "RGB" as the official VGGT loader does.

    Mode exactly "RGBA" is alpha-composited onto an opaque white background first (when
    `composite_alpha`); every other mode (including "LA", "P" with transparency, "RGBa") is
    converted directly, so its alpha is dropped. With `composite_alpha=False` this is a plain
    `convert("RGB")`, as π³'s loader does.
    """
    if composite_alpha and img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def load_image(
    path: str | os.PathLike[str], *, composite_alpha: bool = True, fix: str = _CORRUPT_FIX
) -> np.ndarray:
    """Decode one image file to uint8 `[H, W, 3]` RGB, as the official VGGT loader does.

    The file is fully decoded (`.load()`), so truncated files are detected here rather than
    silently padded. A missing, unreadable or corrupt file raises `DataError` naming the file and
    `fix` (what to do about it; a dataset's default says to re-extract it or drop the frame).
    """
    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()
            rgb = to_rgb(img, composite_alpha=composite_alpha)
    except FileNotFoundError:
        raise DataError(f"image file not found: {p}; check the dataset root, or {fix}") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, ... on bad data
        raise DataError(
            f"cannot decode image {p} ({type(exc).__name__}: {exc}); the file is missing, "
            f"truncated or corrupt: {fix}"
        ) from exc
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"image {p} decoded to an unusable array of shape {arr.shape}; {fix}")
    return arr


def _want_progress(progress: bool | None, n: int) -> bool:
    if progress is not None:
        return progress
    return n >= PROGRESS_MIN_IMAGES


def load_images(
    paths: Sequence[str | os.PathLike[str]],
    workers: int | None = None,
    progress: bool | None = None,
    *,
    composite_alpha: bool = True,
    fix: str = _CORRUPT_FIX,
) -> list[np.ndarray]:
    """Decode `paths` in parallel (thread pool), in the given order, with `load_image`.

    `workers` defaults to one thread per core (at most 16). `progress=None` allows a bar
    (`avggt_bench.progress`: stderr TTY or AVGGT_PROGRESS=1) from `PROGRESS_MIN_IMAGES` images on,
    True allows it for any count, False never shows one. The first failing file raises its
    `DataError`.
    """
    paths = list(paths)
    if not paths:
        raise DataError("no image files to load (empty frame list); check the frame selection")
    n_workers = default_workers(len(paths)) if workers is None else int(workers)
    if n_workers < 1:
        raise DataError(f"workers must be >= 1 to load images, got {workers}")

    bar = None
    if _want_progress(progress, len(paths)):
        bar = progress_bar(total=len(paths), desc="decoding images", unit="img")

    def one(path: str | os.PathLike[str]) -> np.ndarray:
        arr = load_image(path, composite_alpha=composite_alpha, fix=fix)
        if bar is not None:
            bar.update(1)
        return arr

    try:
        if n_workers == 1 or len(paths) == 1:
            return [one(p) for p in paths]
        with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="avggt-decode") as pool:
            # map preserves order and re-raises the first error (in input order)
            return list(pool.map(one, paths))
    finally:
        if bar is not None:
            bar.close()


def size_mismatch_message(
    sizes_hw: Sequence[tuple[int, int]], fix: str = MIXED_SIZES_FIX
) -> str | None:
    """None when all (H, W) sizes agree, else a message listing the distinct sizes and the fix.

    Each distinct size is given as W x H with the number of images and the index of the first
    image of that size; the first image whose size differs from image 0 is named explicitly.
    """
    if not sizes_hw:
        return None
    first_index: dict[tuple[int, int], int] = {}
    counts: dict[tuple[int, int], int] = {}
    for i, hw in enumerate(sizes_hw):
        hw = (int(hw[0]), int(hw[1]))
        first_index.setdefault(hw, i)
        counts[hw] = counts.get(hw, 0) + 1
    if len(first_index) == 1:
        return None
    listed = ", ".join(
        f"{w}x{h} ({counts[(h, w)]} image{'s' if counts[(h, w)] != 1 else ''}, first at index {i})"
        for (h, w), i in first_index.items()
    )
    offender = sorted(first_index.values())[1]
    h0, w0 = sizes_hw[0]
    ho, wo = sizes_hw[offender]
    return (
        f"images have {len(first_index)} different sizes (W x H): {listed}; image {offender} is "
        f"{wo}x{ho} while image 0 is {w0}x{h0}. Fix: {fix}"
    )


def stack_images(images: Sequence[np.ndarray]) -> torch.Tensor:
    """Stack same-size uint8 `[H, W, 3]` arrays into a uint8 `[S, H, W, 3]` tensor.

    Raises `DataError` for an empty list, a wrongly shaped/typed array, or mixed sizes (listing the
    distinct sizes and the fix).
    """
    images = list(images)
    if not images:
        raise DataError("no images to stack (the scene has no images); check the frame selection")
    arrays = []
    for i, img in enumerate(images):
        arr = np.asarray(img)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise DataError(
                f"image {i} must be a uint8 [H, W, 3] RGB array, got {arr.dtype} {arr.shape}; "
                "decode it with avggt_bench.data.images.load_image"
            )
        arrays.append(arr)
    msg = size_mismatch_message([a.shape[:2] for a in arrays])
    if msg is not None:
        raise DataError(msg)
    return torch.from_numpy(np.stack(arrays, axis=0))
