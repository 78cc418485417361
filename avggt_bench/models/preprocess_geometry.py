"""What preprocessing does to a view, without touching pixels: the `PreprocessConfig` (modes and
sizes), the target size of an input (`target_size`, VGGT's crop / pad rule and π³'s pixel budget),
the per-view `ViewTransform` that lets ground-truth intrinsics and pixels follow the resize / crop
/ pad, and the `Preprocessed` result. `models/preprocess.py` does the pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from avggt_bench.errors import ConfigError, DataError

MODES = ("crop", "pad", "pi3_budget")


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


__all__ = ["MODES", "PreprocessConfig", "Preprocessed", "ViewTransform", "target_size"]
