"""Protocol dispatcher: `evaluate_scene` computes one scene's metrics as its preset says, and
`aggregate` combines scenes by the preset's rule (the keys are described in `metrics/protocol.py`).

A scene's metrics come in groups (pose, trajectory, points, scannet_cd, depth), each with its own
status, alignment parameters and timing; bad input (frame-count mismatch, NaN predictions, all
invalid depth, degenerate Sim(3), a missing optional library) becomes a status and a message, never
an exception. `aggregate` averages each group over the scenes where it succeeded and counts and
names every scene it left out.
"""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from avggt_bench.data.cameras import rigid_inverse
from avggt_bench.data.scene import Scene
from avggt_bench.errors import ConfigError
from avggt_bench.metrics import adapters
from avggt_bench.metrics import points as pts
from avggt_bench.metrics.depth import depth_errors
from avggt_bench.metrics.geometry import (
    ERROR,
    INVALID_INPUT,
    NO_VALID,
    NONFINITE,
    OK,
    SKIPPED,
    MetricError,
    as_poses_4x4,
    umeyama_sim3,
)
from avggt_bench.metrics.pose import pose_table, relative_pose_errors
from avggt_bench.metrics.protocol import Protocol
from avggt_bench.metrics.trajectory import trajectory_errors
from avggt_bench.models.predictions import Predictions
from avggt_bench.models.preprocess import ViewTransform

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


@dataclass
class GroupResult:
    """One metric group of one scene."""

    status: str = OK
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # alignment parameters and counts
    seconds: float = 0.0
    weight: float | None = None  # valid-pixel count (pixel_weighted)
    pairs: tuple[np.ndarray, np.ndarray] | None = None  # relpose (rot, trans) errors, in memory

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "metrics": dict(self.metrics),
            "params": self.params,
            "seconds": self.seconds,
            "weight": self.weight,
        }


@dataclass
class SceneResult:
    """Per-scene metric values, alignment parameters, status and message."""

    scene_id: str
    dataset: str
    task: str | None
    category: str | None = None
    status: str = OK
    message: str = ""
    unit: str = "m"
    groups: dict[str, GroupResult] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    frame_ids: list[Any] = field(default_factory=list)
    dropped: list[tuple[Any, str]] = field(default_factory=list)  # the loader's (frame, reason)

    @property
    def metrics(self) -> dict[str, float]:
        """All groups' metrics in one flat dict (names are unique across groups)."""
        return {k: v for g in self.groups.values() for k, v in g.metrics.items()}

    @property
    def timings(self) -> dict[str, float]:
        return {name: g.seconds for name, g in self.groups.items()}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (per-pair errors stay in memory only)."""
        return {
            "scene_id": self.scene_id,
            "dataset": self.dataset,
            "task": self.task,
            "category": self.category,
            "status": self.status,
            "message": self.message,
            "unit": self.unit,
            "metrics": self.metrics,
            "timings_s": self.timings,
            "groups": {k: g.as_dict() for k, g in self.groups.items()},
            "outputs": self.outputs,
            "frame_ids": [str(f) for f in self.frame_ids],
            "dropped": [_dropped_entry(d) for d in self.dropped],
        }

    @classmethod
    def skipped(
        cls, scene_id: str, dataset: str, reason: str, category: str | None = None
    ) -> SceneResult:
        """A scene the loader or protocol skipped, so that `aggregate` can count it."""
        return cls(scene_id, dataset, None, category, SKIPPED, reason)

    @classmethod
    def from_skipped(cls, item: Any) -> SceneResult:
        """From the loader's `SkippedScene` (scene_id, reason, message, category, dataset)."""
        message = f"{item.reason}: {item.message}" if getattr(item, "message", "") else item.reason
        return cls.skipped(item.scene_id, getattr(item, "dataset", ""), message, item.category)


def _dropped_entry(item: Any) -> dict[str, str]:
    if isinstance(item, tuple | list) and len(item) == 2:
        return {"frame": str(item[0]), "reason": str(item[1])}
    return {"frame": "", "reason": str(item)}


# ---------------------------------------------------------------------------- dispatcher


def evaluate_scene(
    pred: Predictions,
    scene: Scene,
    preset: Mapping[str, Any],
    transforms: list[ViewTransform] | None = None,
    *,
    batch: int = 0,
) -> SceneResult:
    """Metrics of one scene per its protocol preset; never raises for bad input."""
    result = SceneResult(
        scene.scene_id,
        scene.dataset,
        preset.get("task") if isinstance(preset, Mapping) else None,
        getattr(scene, "category", None) or scene.meta.get("category"),
        frame_ids=list(scene.frame_ids),
        dropped=list(getattr(scene, "dropped", None) or []),
    )
    try:
        proto = Protocol.from_preset(preset)
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


# ----------------------------------------------------------------------------- groups


def _gt_w2c(scene: Scene) -> np.ndarray:
    if scene.extrinsics is None:
        raise MetricError(INVALID_INPUT, "the scene has no ground-truth poses")
    w2c = as_poses_4x4(scene.extrinsics)
    if not np.isfinite(w2c).all():
        raise MetricError(INVALID_INPUT, "non-finite ground-truth poses (the loader should drop)")
    return w2c


def _pose_group(pred, scene, proto: Protocol, transforms, batch) -> GroupResult:
    gt, pr = _gt_w2c(scene), adapters.pred_w2c(pred, batch)
    if gt.shape[0] < 2:
        raise MetricError(INVALID_INPUT, f"relative pose needs >= 2 frames, got {gt.shape[0]}")
    order = proto.compat["pair_order"]
    err = relative_pose_errors(torch.from_numpy(pr), torch.from_numpy(gt), order=order)
    bad = int((~np.isfinite(pr).all(axis=(1, 2))).sum())
    message = f"{bad} non-finite predicted pose(s): their pairs count as failures" if bad else ""
    rot, trans = err.rot_deg.numpy(), err.trans_deg.numpy()
    return GroupResult(
        metrics=pose_table(err.rot_deg, err.trans_deg, proto.thresholds),
        message=message,
        params={
            "pair_order": order,
            "n_pairs": int(rot.size),
            "degenerate_pairs": err.degenerate_pairs,
            "nonfinite_poses": bad,
        },
        pairs=(rot, trans),
    )


def _trajectory_group(pred, scene, proto: Protocol, transforms, batch) -> GroupResult:
    gt_c2w = rigid_inverse(_gt_w2c(scene))
    pr_c2w = rigid_inverse(adapters.pred_w2c(pred, batch))
    if proto.compat["gt_relative_to_first"]:  # both relative to their first frame
        gt_c2w = rigid_inverse(gt_c2w[:1]) @ gt_c2w
        pr_c2w = rigid_inverse(pr_c2w[:1]) @ pr_c2w if np.isfinite(pr_c2w[0]).all() else pr_c2w
    align = proto.trajectory_alignment
    std = trajectory_errors(pr_c2w, gt_c2w, align=align)
    keys = ("ate", "are", "rpe_trans", "rpe_rot")
    group = GroupResult(
        status=std["status"],
        message=std["message"],
        metrics={k: std[k] for k in keys},
        params={
            "align": align,
            "alignment": std["alignment"],
            "n_poses": std["n_poses"],
            "rpe_pairs": std["rpe_pairs"],
        },
    )
    c = proto.compat
    compat_align = c["traj_align"] or align
    if c["traj_input"] != "c2w" or compat_align != align:
        alt = trajectory_errors(pr_c2w, gt_c2w, align=compat_align, traj_input=c["traj_input"])
        group.metrics.update({f"{k}_compat": alt[k] for k in keys})
        group.params["compat"] = {
            "align": compat_align,
            "traj_input": c["traj_input"],
            "alignment": alt["alignment"],
            "status": alt["status"],
        }
    return group


def _finite_rows(a: np.ndarray, b: np.ndarray, drop: bool, what: str):
    ok = np.isfinite(a).all(1)
    if ok.all():
        return a, b, 0
    if not drop:
        raise MetricError(NONFINITE, f"{int((~ok).sum())} non-finite {what} at valid pixels")
    return a[ok], b[ok], int((~ok).sum())


def _points_group(pred, scene, proto: Protocol, transforms, batch) -> GroupResult:
    a, c = proto.alignment, proto.compat
    kind = proto.points_alignment
    if kind == "bbox_scale_center":
        raise MetricError(INVALID_INPUT, "bbox_scale_center belongs to scannet_recon (cd)")
    gt = adapters.gt_on_grid(scene, proto.gt_compare, transforms, c["k_rescale"], pred.image_hw)
    if not gt.valid.any():
        raise MetricError(NO_VALID, "no valid ground-truth pixel on the comparison grid")
    source = proto.outputs["points_source"]
    params: dict[str, Any] = {
        "gt_compare": proto.gt_compare,
        "grid_hw": list(gt.hw),
        "points_source": source,
    }
    if kind == "median_scale_shift_crop224_icp":
        p = adapters.resize_points(adapters.pred_points(pred, source, "first_camera", batch), gt.hw)
        g = adapters.to_first_camera(gt.points(), gt.w2c[0])
        mode = c["median_mode"] or "lower"
        p, g, params["median"] = pts.median_scale_shift(p, g, gt.valid, mode)
        mask = gt.valid & pts.centre_crop_mask(gt.hw, int(a["crop"]))[None]
        pa, gb, dropped = _finite_rows(p[mask], g[mask], a["drop_nonfinite"], "predicted points")
        proj_late = bool(c["proj_after_subsample"])
        if a["umeyama"] and not proj_late:
            sim = umeyama_sim3(pa, gb)
            pa, params["umeyama"] = sim.apply(pa), sim.as_dict()
        if a["max_points"]:
            pa, _ = pts.subsample(pa, int(a["max_points"]), int(a["seed"]))
            gb, _ = pts.subsample(gb, int(a["max_points"]), int(a["seed"]))
        if a["umeyama"] and proj_late:  # upstream: correspondence already broken (compat)
            if len(pa) != len(gb):
                raise MetricError(INVALID_INPUT, "proj_after_subsample needs equal cloud sizes")
            sim = umeyama_sim3(pa, gb)
            pa, params["umeyama"] = sim.apply(pa), sim.as_dict()
        icp = pts.icp_refine(pa, gb, float(a["icp_threshold"]))
        pa, params["icp"] = icp.apply(pa), icp.as_dict()
    else:
        p = adapters.resize_points(adapters.pred_points(pred, source, "world", batch), gt.hw)
        pa, gb, dropped = _finite_rows(
            p[gt.valid], gt.points()[gt.valid], a["drop_nonfinite"], "predicted points"
        )
        if a["max_points"]:  # one seeded draw for both: keeps the correspondence
            pa, idx = pts.subsample(pa, int(a["max_points"]), int(a["seed"]))
            gb = gb[idx]
        if kind in ("umeyama_icp", "umeyama"):
            threshold = float(a["icp_threshold"]) if kind == "umeyama_icp" else None
            pa, aligned = pts.align_umeyama_icp(pa, gb, threshold)
            params.update(aligned)
    params.update({"n_pred": len(pa), "n_gt": len(gb), "dropped_nonfinite": dropped})
    metrics = pts.point_cloud_metrics(pa, gb, normals=proto.wants("nc", "nc1", "nc2"))
    if proto.wants("dtu_overall", "dtu"):
        metrics.update(_dtu(pa, scene, proto, params))
    return GroupResult(metrics=metrics, params=params)


def _dtu(aligned: np.ndarray, scene: Scene, proto: Protocol, params: dict) -> dict[str, float]:
    """DTU's official accuracy / completeness on the aligned cloud (metres → mm). The evaluation
    kit comes from the loader: either `scene.meta['dtu_eval']` (obs_mask, bbox, res, plane,
    optional stl_mm; else scene.points in metres) or `scene.meta['dtu_eval_root']` with the
    official files of scan{N}."""
    ev = scene.meta.get("dtu_eval")
    if ev is None and scene.meta.get("dtu_eval_root"):
        match = re.fullmatch(r"scan(\d+)", scene.scene_id)
        if match is None:
            raise MetricError(INVALID_INPUT, f"DTU scene id {scene.scene_id!r} is not scan<N>")
        ev = pts.load_dtu_eval(scene.meta["dtu_eval_root"], int(match.group(1)))
    if ev is None:
        raise MetricError(
            INVALID_INPUT, "dtu_overall needs the official DTU files (dataset option eval_root)"
        )
    stl = ev.get("stl_mm")
    if stl is None:
        if scene.points is None:
            raise MetricError(INVALID_INPUT, "dtu_overall: no reference scan (stl) for the scene")
        stl = scene.points.cpu().numpy() * 1000.0
    out = pts.dtu_official(
        aligned * 1000.0,
        stl,
        np.asarray(ev["obs_mask"]),
        np.asarray(ev["bbox"]),
        float(ev["res"]),
        np.asarray(ev["plane"]),
        seed=int(proto.alignment["dtu_seed"]),
        bbox_margin=proto.compat["dtu_bbox"],
    )
    params["dtu"] = {k: v for k, v in out.items() if k.startswith("n_")}
    return {k: out[k] / 1000.0 for k in ("dtu_acc", "dtu_comp", "dtu_overall")}  # canonical m


def _scannet_cd_group(pred, scene, proto: Protocol, transforms, batch) -> GroupResult:
    """Depth-unprojected points above the confidence cut (the preset's, or the default of the
    prediction's kind of confidence), into the GT world by the first GT c2w,
    bbox_scale_center against the reference vertices, clipped Chamfer sum."""
    if scene.points is None:
        raise MetricError(INVALID_INPUT, "ScanNet Chamfer needs reference points (mesh vertices)")
    tau = proto.outputs["conf_threshold"]
    p = adapters.pred_points(pred, "depth_unproject", "first_camera", batch)
    mask = adapters.confident(pred, tau, batch)
    cloud = p[mask]
    cloud = cloud[np.isfinite(cloud).all(1)]
    if len(cloud) == 0:
        raise MetricError(NO_VALID, "no predicted point passes the confidence threshold")
    c2w0 = rigid_inverse(_gt_w2c(scene)[:1])[0]
    world = cloud @ c2w0[:3, :3].T + c2w0[:3, 3]
    ref = scene.points.cpu().numpy().astype(np.float64)
    aligned, bbox = pts.bbox_scale_center(world, ref)
    cd = pts.fastvggt_chamfer(aligned, ref)
    params = {
        "bbox_scale_center": bbox,
        "conf_threshold": tau,
        "n_pred_points": len(cloud),
        "n_pred_voxels": cd["n_pred"],
        "n_gt_voxels": cd["n_gt"],
    }
    return GroupResult(metrics={"cd": cd["cd"]}, params=params)


def _depth_group(pred, scene, proto: Protocol, transforms, batch) -> GroupResult:
    gt = adapters.gt_on_grid(
        scene, proto.gt_compare, transforms, proto.compat["k_rescale"], pred.image_hw
    )
    d = adapters.resize_depth(adapters.pred_depth(pred, batch), gt.hw)
    a = proto.alignment
    kind = a["type"] if proto.task in ("video_depth", "mono_depth") else "median"
    per = a["per"] or ("frame" if proto.task == "mono_depth" else "sequence")
    out = depth_errors(
        d,
        gt.depth,
        gt.valid,
        alignment=kind,
        per=per,
        max_depth=a["max_depth"],
        clip_max=a["clip_max"],
        median_mode=proto.compat["median_mode"] or "numpy",
    )
    keys = ("abs_rel", "sq_rel", "rmse", "log_rmse", "delta1", "delta2", "delta3")
    return GroupResult(
        status=out["status"],
        message=out["message"],
        metrics={k: out[k] for k in keys},
        params={"alignment": kind, "per": per, "units": out["units"]},
        weight=float(out["n_valid"]),
    )


GROUPS = {
    "pose": _pose_group,
    "trajectory": _trajectory_group,
    "points": _points_group,
    "scannet_cd": _scannet_cd_group,
    "depth": _depth_group,
}


# --------------------------------------------------------------------------- aggregation


def aggregate(
    results: Sequence[Any],
    preset: Mapping[str, Any],
    *,
    meaningful: bool = True,
    note: str = "",
) -> dict[str, Any]:
    """Combine per-scene results by the preset's rule.

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
    proto = Protocol.from_preset(preset)
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


__all__ = ["GroupResult", "SceneResult", "aggregate", "evaluate_scene", "parent_as_ground_truth"]
