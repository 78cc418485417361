"""Deterministic weights regenerated from key names (the official test-vector recipe).

For every floating state-dict entry `key`, `r = randn(shape)` from a generator seeded with
`crc32(key)`; 1-D `*norm*.weight` entries get `1 + 0.05 r`, `*.gamma` (LayerScale) `0.1 + 0.02 r`,
everything else `scale * r`. See `tests/data/README.md`.
"""

from __future__ import annotations

import zlib

import torch
from torch import nn

KEEP_DEFAULT = ("image_mean", "image_std")


def recipe_tensor(key: str, shape: tuple[int, ...], scale: float) -> torch.Tensor:
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    r = torch.randn(shape, generator=gen, dtype=torch.float32)
    if len(shape) == 1 and "norm" in key and key.endswith(".weight"):
        return 1 + 0.05 * r
    if key.endswith(".gamma"):
        return 0.1 + 0.02 * r
    return scale * r


@torch.no_grad()
def fill_recipe_weights(model: nn.Module, scale: float) -> nn.Module:
    """Overwrite every floating parameter/buffer of the state dict in place, key by key."""
    for key, tensor in model.state_dict().items():
        if tensor.is_floating_point() and key not in KEEP_DEFAULT:
            tensor.copy_(recipe_tensor(key, tuple(tensor.shape), scale))
    return model
