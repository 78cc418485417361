"""`model=ground_truth`: predictions made from the scene's own ground truth, with noise of a known
size, so an evaluation protocol can be checked end to end through the job (no network runs).

Noise: `rotation_noise_deg` turns the last camera by that angle about its optical axis, so every
frame pair that contains it has a relative rotation error of exactly that angle and every other
pair none; `depth_noise` scales depth by (1 ± depth_noise) in a pixel checkerboard (cameras stay
exact), so un-aligned Abs Rel equals `depth_noise`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from avggt_bench.data.scene import Scene
from avggt_bench.errors import ConfigError
from avggt_bench.models.predictions import Predictions
from avggt_bench.models.scene_predictions import predictions_from_scene

ORACLE = "ground_truth"
FAMILIES = ("vggt", "pi3")


def oracle_predictions(
    scene: Scene,
    family: str = "vggt",
    *,
    rotation_noise_deg: float = 0.0,
    depth_noise: float = 0.0,
) -> Predictions:
    """Ground truth with the `Predictions` fields a `family` model sets (world, kind of
    confidence), perturbed as the module docstring says."""
    if family not in FAMILIES:
        raise ConfigError(f"model.family={family!r} for the ground-truth oracle; use vggt or pi3")
    if scene.extrinsics is None:
        raise ConfigError(
            f"scene {scene.scene_id}: the ground-truth oracle needs GT poses; "
            "use a dataset that has them (e.g. the synthetic presets)"
        )
    if not 0.0 <= depth_noise < 1.0:
        raise ConfigError(f"model.depth_noise={depth_noise} must be in [0, 1)")
    depth = None  # exact GT depth (unit depth for a pose-only protocol that loaded none)
    if depth_noise and scene.depth is not None:
        depth = scene.depth.double().numpy()
        h, w = depth.shape[-2:]
        sign = np.where((np.add.outer(np.arange(h), np.arange(w)) % 2) == 0, 1.0, -1.0)
        depth = depth * (1.0 + depth_noise * sign)
    pred = predictions_from_scene(scene, family, depth=depth)
    if rotation_noise_deg:
        a = math.radians(rotation_noise_deg)
        turn = torch.tensor(
            [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]],
            dtype=pred.extrinsics.dtype,
        )
        # E' = Rz·E: the camera turns about its own optical axis, its centre stays put
        pred.extrinsics[0, -1] = turn @ pred.extrinsics[0, -1]
    return pred


__all__ = ["FAMILIES", "ORACLE", "oracle_predictions"]
