"""Fidelity of an accelerated model to its dense parent on the same input.

The dense parent's predictions play the ground truth: pose AUC of the accelerated cameras against
the dense ones (all pairs, in the given pair order of `metrics/pose.py`; `vggt` is VGGT's current
official evaluation), the median relative depth difference, and the point-map difference
relative to the scene's extent. Maps are compared on a regular pixel subsample (`stride`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from avggt_bench.metrics.pose import accuracy_at, pose_auc, relative_pose_errors
from avggt_bench.models.predictions import Predictions

MAP_STRIDE = 4


@dataclass
class Reference:
    """What fidelity needs of a prediction: cameras and subsampled maps of scene 0."""

    extrinsics: torch.Tensor  # [S, 3, 4] float64
    depth: torch.Tensor | None  # [S, h, w] float32
    points: torch.Tensor | None  # [S, h, w, 3] float32
    stride: int = MAP_STRIDE

    @classmethod
    def from_predictions(cls, pred: Predictions, stride: int = MAP_STRIDE) -> Reference:
        def sub(t):
            return None if t is None else t[0, :, ::stride, ::stride].float().cpu()

        depth = sub(pred.depth)
        return cls(
            extrinsics=pred.extrinsics[0].double().cpu(),
            depth=None if depth is None else depth[..., 0],
            points=sub(pred.world_points),
            stride=stride,
        )


def fidelity(pred: Reference, dense: Reference, pair_order: str = "vggt") -> dict[str, Any]:
    """Accelerated vs dense: pose AUC@5/@30 (%), mean errors, depth and point differences."""
    out: dict[str, Any] = {"map_stride": dense.stride}
    if pred.extrinsics.shape[0] >= 2:
        err = relative_pose_errors(pred.extrinsics, dense.extrinsics, order=pair_order)
        out.update(
            {
                "pose_auc@5": 100 * pose_auc(err.rot_deg, err.trans_deg, 5),
                "pose_auc@30": 100 * pose_auc(err.rot_deg, err.trans_deg, 30),
                "rra@5": 100 * accuracy_at(err.rot_deg, 5),
                "rot_err_mean_deg": float(err.rot_deg.mean()),
                "trans_err_mean_deg": float(err.trans_deg.mean()),
            }
        )
    if pred.depth is not None and dense.depth is not None:
        rel = (pred.depth - dense.depth).abs() / dense.depth.abs().clamp_min(1e-12)
        out["depth_rel_diff_median"] = float(rel.median())
        out["depth_rel_diff_mean"] = float(rel.mean())
    if pred.points is not None and dense.points is not None:
        flat = dense.points.reshape(-1, 3).double()
        extent = (flat - flat.mean(0)).norm(dim=-1).median().clamp_min(1e-12)
        diff = (pred.points - dense.points).reshape(-1, 3).double().norm(dim=-1)
        out["points_diff_median_rel"] = float(diff.median() / extent)
        out["points_diff_mean_rel"] = float(diff.mean() / extent)
    return out
