"""The analysed scene as network input: images `[S, 3, H, W]` in [0, 1] and, where known, the
ground truth at that resolution (for `gt_corr`). The synthetic scene is rendered directly at the
network input size, so its depth, intrinsics and poses need no resampling."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avggt_bench.analysis.pairs import SceneGeometry
from avggt_bench.data.synthetic import SyntheticConfig, render_scene
from avggt_bench.errors import ConfigError


@dataclass
class AnalysisInput:
    images: torch.Tensor
    geometry: SceneGeometry | None
    description: str


def synthetic_input(
    views: int,
    width: int,
    height: int,
    seed: int = 0,
    trajectory: str = "orbit",
    fov_deg: float = 60.0,
    num_objects: int = 8,
    patch: int = 14,
) -> AnalysisInput:
    """Render `views` synthetic views at `width` x `height` (multiples of the patch size)."""
    if width % patch or height % patch:
        raise ConfigError(
            f"scene size {width}x{height} must be a multiple of the patch size {patch} so the GT "
            f"needs no resampling; e.g. scene.width={round(width / patch) * patch} "
            f"scene.height={round(height / patch) * patch}"
        )
    scene = render_scene(
        SyntheticConfig(
            num_views=int(views),
            width=int(width),
            height=int(height),
            seed=int(seed),
            trajectory=trajectory,
            fov_deg=float(fov_deg),
            num_objects=int(num_objects),
        )
    )
    images = scene.images.permute(0, 3, 1, 2).float() / 255.0
    depth = torch.where(scene.valid, scene.depth, torch.zeros_like(scene.depth))
    geometry = SceneGeometry(depth=depth, intrinsics=scene.intrinsics, extrinsics=scene.extrinsics)
    return AnalysisInput(images, geometry, f"synthetic {trajectory} seed {seed}, {width}x{height}")
