"""What VGGT and π³ share about their input images: the ImageNet normalisation and the check."""

from __future__ import annotations

import torch

from avggt_bench.errors import DataError

# the normalisation of the DINOv2 encoders both models start from
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_images(images: torch.Tensor, patch_size: int = 14) -> torch.Tensor:
    """Validate a model input and add the batch axis to `[S, 3, H, W]`."""
    if not isinstance(images, torch.Tensor):
        raise DataError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() == 4:
        images = images[None]
    if images.dim() != 5 or images.shape[2] != 3:
        raise DataError(
            f"images must be [S, 3, H, W] or [B, S, 3, H, W] RGB, got shape {tuple(images.shape)}"
        )
    if images.shape[1] == 0:
        raise DataError("the scene has no images (S = 0); pass at least one view")
    height, width = images.shape[-2:]
    if height % patch_size or width % patch_size:
        raise DataError(
            f"image size {height}x{width} (HxW) is not a multiple of the patch size {patch_size}; "
            f"preprocess the images first (avggt_bench.models.preprocess, mode 'crop' or 'pad'), "
            f"e.g. to {max(patch_size, round(height / patch_size) * patch_size)}x"
            f"{max(patch_size, round(width / patch_size) * patch_size)}"
        )
    return images
