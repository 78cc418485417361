"""Protocol dispatcher: `evaluate_scene` computes one scene's metrics as its preset says (the
keys are described in `metrics/evaluation_protocol.py`), group by group (`metrics/groups.py`);
`aggregate` (`metrics/aggregate.py`) combines scenes by the preset's rule.

A scene's metrics come in groups (pose, trajectory, points, scannet_cd, depth), each with its own
status, alignment parameters and timing; bad input (frame-count mismatch, NaN predictions, all
invalid depth, degenerate Sim(3), a missing optional library) becomes a status and a message, never
an exception. `aggregate` averages each group over the scenes where it succeeded and counts and
names every scene it left out.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from avggt_bench.data.scene import Scene
from avggt_bench.errors import ConfigError
from avggt_bench.metrics import adapters
from avggt_bench.metrics.aggregate import aggregate
from avggt_bench.metrics.evaluation_protocol import Protocol, as_protocol
from avggt_bench.metrics.geometry import ERROR, INVALID_INPUT, OK, MetricError
from avggt_bench.metrics.groups import GROUPS
from avggt_bench.metrics.results import GroupResult, SceneResult
from avggt_bench.models.predictions import Predictions
from avggt_bench.models.preprocess_geometry import ViewTransform

# Metrics with a length unit: converted to the preset's report_unit (the rest are unitless).
LENGTH_KEYS = {
    "ate",
    "rpe_trans",
    "ate_compat",
    "rpe_trans_compat",
    "acc",
    "acc_med",
    "comp",
    "comp_med",
    "chamfer_mean",
    "chamfer_sum",
    "cd",
    "dtu_acc",
    "dtu_comp",
    "dtu_overall",
    "rmse",
    "sq_rel",
}


def evaluate_scene(
    pred: Predictions,
    scene: Scene,
    protocol: Protocol | Mapping[str, Any],
    transforms: list[ViewTransform] | None = None,
    *,
    batch: int = 0,
) -> SceneResult:
    """Metrics of one scene per its protocol; never raises for bad input.

    `protocol` is the `Protocol` the job built once from its preset (`Protocol.from_preset`), or
    the preset mapping itself, validated here (an invalid one is the scene's ConfigError status).
    """
    if isinstance(protocol, Protocol):
        task = protocol.task
    else:
        task = protocol.get("task") if isinstance(protocol, Mapping) else None
    result = SceneResult(
        scene.scene_id,
        scene.dataset,
        task,
        getattr(scene, "category", None) or scene.meta.get("category"),
        frame_ids=list(scene.frame_ids),
        dropped=list(getattr(scene, "dropped", None) or []),
    )
    try:
        proto = as_protocol(protocol)
        result.unit = proto.report_unit
        adapters.check_frames(pred, scene, batch)
        result.outputs = adapters.describe_outputs(pred)
    except (ConfigError, MetricError) as exc:
        result.status = getattr(exc, "status", ERROR)
        result.message = str(exc) if isinstance(exc, MetricError) else f"ConfigError: {exc}"
        return result
    for name in proto.groups:
        start = time.perf_counter()
        try:
            group = GROUPS[name](pred, scene, proto, transforms, batch)
        except MetricError as exc:
            group = GroupResult(status=exc.status, message=str(exc))
        except Exception as exc:  # unexpected: keep the traceback, go on with the sweep
            group = GroupResult(
                status=ERROR, message=f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            )
        group.seconds = time.perf_counter() - start
        group.metrics = _to_unit(group.metrics, proto.unit_factor)
        result.groups[name] = group
    failed = [(n, g) for n, g in result.groups.items() if g.status != OK]
    if failed:
        result.status = failed[0][1].status
        result.message = "; ".join(f"{n}: {g.message}" for n, g in failed)
    return result


def _to_unit(metrics: dict[str, float], factor: float) -> dict[str, float]:
    if factor == 1.0:
        return metrics
    return {k: (v * factor if k in LENGTH_KEYS else v) for k, v in metrics.items()}


def parent_as_ground_truth(dense: Predictions, scene: Scene, batch: int = 0) -> Scene:
    """The dense parent's predictions as a ground-truth `Scene` on the network grid (fidelity:
    the same protocol metrics of an accelerated model against its parent). Cameras = the
    parent's w2c, depth = its depth output (π³: local z), K = its intrinsics (π³: the adapter's
    estimate); evaluate with `gt_compare: input` and no transforms (same grid)."""
    w2c = adapters.pred_w2c(dense, batch)
    depth = adapters.pred_depth(dense, batch)
    if dense.intrinsics is None:
        raise MetricError(INVALID_INPUT, "the dense parent has no intrinsics")
    s, h, w = depth.shape
    finite = np.isfinite(depth) & (depth > 0)
    return Scene(
        dataset=scene.dataset,
        scene_id=f"{scene.scene_id}@dense_parent",
        images=torch.zeros(1, 1, 1, 3, dtype=torch.uint8).expand(s, h, w, 3),  # no pixels needed
        intrinsics=torch.from_numpy(adapters.as_f64(dense.intrinsics[batch])),
        extrinsics=torch.from_numpy(w2c[:, :3].copy()),
        depth=torch.from_numpy(np.where(finite, depth, 0.0)).float(),
        valid=torch.from_numpy(finite),
        points=scene.points,
        frame_ids=list(scene.frame_ids),
        meta={**scene.meta, "ground_truth": "dense_parent_predictions"},
    )


# `aggregate`, `GroupResult` and `SceneResult` are re-exported: the job imports them from here.
__all__ = [
    "GroupResult",
    "SceneResult",
    "aggregate",
    "evaluate_scene",
    "parent_as_ground_truth",
]
