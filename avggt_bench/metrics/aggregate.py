"""Combining per-scene results into a job's summary, by the preset's aggregation rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from avggt_bench.metrics.evaluation_protocol import Protocol, as_protocol
from avggt_bench.metrics.geometry import OK, SKIPPED
from avggt_bench.metrics.pose import pose_table
from avggt_bench.metrics.results import SceneResult


def aggregate(
    results: Sequence[Any],
    protocol: Protocol | Mapping[str, Any],
    *,
    meaningful: bool = True,
    note: str = "",
) -> dict[str, Any]:
    """Combine per-scene results by the protocol's rule (`protocol`: the job's `Protocol`, or
    the preset mapping, validated here).

    `per_scene_mean`: plain mean over scenes; `pooled_pairs`: pose metrics over all pairs of all
    scenes; `per_category_mean`: pose metrics over each category's pooled pairs, then the mean over
    categories; `pixel_weighted`: Σ n·M / Σ n with n the valid-pixel count. Groups other than pose
    fall back to the per-scene mean (depth: pixel-weighted). Each group averages only the scenes
    where it succeeded; every other scene is counted and named with its status and message.
    `results` may mix `SceneResult`s and the loader's `SkippedScene`s.

    `meaningful=False` (random weights, ground-truth oracle) computes everything the same way but
    marks the summary (`meaningful`, `note`) so records and reports flag the accuracy as not a
    model's. Raises ConfigError only for an invalid preset.
    """
    proto = as_protocol(protocol)
    results = [r if isinstance(r, SceneResult) else SceneResult.from_skipped(r) for r in results]
    out: dict[str, Any] = {
        "rule": proto.aggregation,
        "unit": proto.report_unit,
        "n_scenes": len(results),
        "n_ok": sum(r.status == OK for r in results),
        "n_skipped": sum(r.status == SKIPPED for r in results),
        "n_failed": sum(r.status not in (OK, SKIPPED) for r in results),
        "not_evaluated": [
            {
                "scene": r.scene_id,
                "status": r.status,
                "message": r.message.splitlines()[0] if r.message else "",
            }
            for r in results
            if r.status != OK
        ],
        "metrics": {},
        "groups": {},
        "meaningful": bool(meaningful),
        "note": note or ("" if meaningful else "accuracy is not meaningful for these predictions"),
    }
    for name in proto.groups:
        ok = [r for r in results if name in r.groups and r.groups[name].status == OK]
        info: dict[str, Any] = {"n_evaluated": len(ok), "n_not_evaluated": len(results) - len(ok)}
        if name == "pose" and proto.aggregation in ("pooled_pairs", "per_category_mean"):
            metrics = _pooled_pose(ok, proto, info)
        elif name == "depth" and proto.aggregation == "pixel_weighted":
            metrics = _weighted(ok, name, info)
        else:
            metrics = _mean(ok, name, info)
        info["metrics"] = metrics
        out["groups"][name] = info
        out["metrics"].update(metrics)
    return out


def _mean(ok: list[SceneResult], name: str, info: dict) -> dict[str, float]:
    keys = sorted({k for r in ok for k in r.groups[name].metrics})
    out, nan_counts = {}, {}
    for k in keys:
        vals = np.array([r.groups[name].metrics.get(k, np.nan) for r in ok], dtype=np.float64)
        finite = np.isfinite(vals)
        if (~finite).any():
            nan_counts[k] = int((~finite).sum())
        out[k] = float(vals[finite].mean()) if finite.any() else float("nan")
    if nan_counts:
        info["nonfinite_values_excluded"] = nan_counts
    return out


def _weighted(ok: list[SceneResult], name: str, info: dict) -> dict[str, float]:
    weights = np.array([r.groups[name].weight or 0.0 for r in ok])
    info["zero_weight_scenes"] = [r.scene_id for r, w in zip(ok, weights) if w == 0]
    info["pixels"] = float(weights.sum())
    if weights.sum() == 0:
        return {}
    keys = sorted({k for r in ok for k in r.groups[name].metrics})
    return {
        k: float(
            sum(w * r.groups[name].metrics[k] for r, w in zip(ok, weights) if w > 0) / weights.sum()
        )
        for k in keys
    }


def _pooled_pose(ok: list[SceneResult], proto: Protocol, info: dict) -> dict[str, float]:
    def table(rs: list[SceneResult]) -> dict[str, float]:
        rot = np.concatenate([r.groups["pose"].pairs[0] for r in rs])
        trans = np.concatenate([r.groups["pose"].pairs[1] for r in rs])
        return pose_table(torch.from_numpy(rot), torch.from_numpy(trans), proto.thresholds)

    if not ok:
        return {}
    info["n_pairs"] = int(sum(r.groups["pose"].pairs[0].size for r in ok))
    if proto.aggregation == "pooled_pairs":
        return table(ok)
    by_cat: dict[str, list[SceneResult]] = {}
    for r in ok:
        by_cat.setdefault(str(r.category), []).append(r)
    per_cat = {cat: table(rs) for cat, rs in by_cat.items()}
    info["categories"] = {cat: {"n_scenes": len(by_cat[cat]), **m} for cat, m in per_cat.items()}
    info["n_categories"] = len(per_cat)
    keys = next(iter(per_cat.values())).keys()
    return {k: float(np.mean([m[k] for m in per_cat.values()])) for k in keys}


__all__ = ["aggregate"]
