"""Test-facing names of the ground-truth-derived predictions; the implementation is production
code (`avggt_bench.models.scene_predictions`, used by the ground-truth oracle and the metric
timing tool)."""

from avggt_bench.models.scene_predictions import (
    noisy_cameras,
    noisy_predictions,
    predictions_from_scene,
)

__all__ = ["noisy_cameras", "noisy_predictions", "predictions_from_scene"]
