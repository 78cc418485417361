"""The metric groups of one scene, one function each (pose, trajectory, points with the DTU
official kit, scannet_cd, depth), indexed by name in `GROUPS`. Each takes
(predictions, scene, protocol, view transforms, batch index), returns a `GroupResult` and raises
`MetricError` for bad input; `metrics/evaluate.py` turns that into a status.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from avggt_bench.data.cameras import rigid_inverse
from avggt_bench.data.scene import Scene
from avggt_bench.metrics import adapters
from avggt_bench.metrics import points as pts
from avggt_bench.metrics.depth import depth_errors
from avggt_bench.metrics.dtu import dtu_scene_metrics
from avggt_bench.metrics.evaluation_protocol import Protocol
from avggt_bench.metrics.geometry import (
    INVALID_INPUT,
    NO_VALID,
    NONFINITE,
    MetricError,
    as_poses_4x4,
    umeyama_sim3,
)
from avggt_bench.metrics.pose import pose_table, relative_pose_errors
from avggt_bench.metrics.results import GroupResult
from avggt_bench.metrics.trajectory import trajectory_errors


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
        metrics.update(dtu_scene_metrics(pa, scene, proto, params))
    return GroupResult(metrics=metrics, params=params)


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


__all__ = ["GROUPS"]
