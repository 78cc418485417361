"""Trajectory metrics: ATE, ARE and RPE after Sim(3) alignment, computed with evo (inputs and
compat switches: docs/conventions.md, "Trajectories"). evo is imported in this module only.

evo's pitfalls are handled here, not left to callers: poses go in as float64 4×4 matrices with
rotations re-projected onto SO(3) (evo rejects float32 or few-digit rotations and crashes on
float32 matrices under NumPy 2); every alignment runs on a deep copy (evo aligns in place);
trajectories that make the Sim(3) fit undetermined (fewer than 3 poses, identical or collinear
camera centres) get status `degenerate_alignment` and NaN metrics instead of an exception;
`sim3_then_origin` (what FastVGGT's evo release did) is applied as two explicit steps, since
current evo rejects the pair.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from avggt_bench.data.cameras import rigid_inverse
from avggt_bench.metrics.geometry import (
    DEGENERATE,
    INVALID_INPUT,
    NONFINITE,
    OK,
    MetricError,
    as_poses_4x4,
    project_so3,
    umeyama_sim3,
)

ALIGNMENTS = ("sim3", "se3", "none", "sim3_then_origin")
TRAJ_INPUTS = ("c2w", "w2c")
NAN = float("nan")


def _evo():
    try:
        import evo
        from evo.core import geometry, metrics, trajectory
    except ImportError as exc:  # evo is a hard dependency; say how to get it back
        raise MetricError(
            "missing_dependency", f"trajectory metrics need evo (pip install evo): {exc}"
        ) from exc
    return evo, geometry, metrics, trajectory


def evo_version() -> str:
    return str(_evo()[0].__version__)


def _clean_poses(poses: Any, name: str) -> np.ndarray:
    p = as_poses_4x4(poses)
    if not np.isfinite(p).all():
        bad = np.where(~np.isfinite(p).all(axis=(1, 2)))[0].tolist()
        raise MetricError(
            NONFINITE if name == "predicted" else INVALID_INPUT,
            f"{len(bad)} {name} pose(s) are not finite (frames {bad[:10]})",
        )
    p[:, :3, :3] = project_so3(p[:, :3, :3])
    return p


def _failed(status: str, message: str, n: int, align: str, traj_input: str) -> dict[str, Any]:
    return {
        "ate": NAN,
        "are": NAN,
        "rpe_trans": NAN,
        "rpe_rot": NAN,
        "n_poses": n,
        "rpe_pairs": max(n - 1, 0),
        "alignment": None,
        "align": align,
        "traj_input": traj_input,
        "status": status,
        "message": message,
    }


def trajectory_errors(
    pred_c2w: Any,
    gt_c2w: Any,
    *,
    align: str = "sim3",
    traj_input: str = "c2w",
    return_aligned: bool = False,
) -> dict[str, Any]:
    """ATE, ARE, RPE-trans, RPE-rot (RMSE; ARE and RPE-rot in degrees) of predicted camera-to-world
    poses against ground truth, paired by position, `[n, 3, 4]` or `[n, 4, 4]`, any float dtype.

    align: `sim3` (Umeyama with scale, the default of every trajectory protocol), `se3` (no
    scale), `none`, or `sim3_then_origin` (compat, FastVGGT: Sim(3), then the first aligned pose
    moved onto the first reference pose). traj_input: `c2w` (standard: positions are camera
    centres) or `w2c` (compat, FastVGGT: both trajectories are replaced by their world-to-camera
    matrices before anything else). RPE uses the n − 1 consecutive pairs (delta = 1 frame) of the
    aligned estimate.

    Returns a dict with `ate`, `are`, `rpe_trans`, `rpe_rot`, `n_poses`, `rpe_pairs`, `alignment`
    (`scale`, `rotation`, `translation` of the Sim(3) estimate → reference, plus `origin` for
    `sim3_then_origin`), `status` (`ok`, `degenerate_alignment`, `nonfinite_prediction`,
    `invalid_input`) and `message`; with `return_aligned`, also `aligned` (the aligned estimate,
    `[n, 4, 4]`). Never raises for degenerate or non-finite trajectories.
    """
    if align not in ALIGNMENTS:
        raise ValueError(f"align={align!r}; valid: {', '.join(ALIGNMENTS)}")
    if traj_input not in TRAJ_INPUTS:
        raise ValueError(f"traj_input={traj_input!r}; valid: {', '.join(TRAJ_INPUTS)}")
    try:
        est = _clean_poses(pred_c2w, "predicted")
        ref = _clean_poses(gt_c2w, "ground-truth")
    except MetricError as exc:
        n = int(np.shape(pred_c2w)[0]) if np.ndim(pred_c2w) == 3 else 0
        return _failed(exc.status, str(exc), n, align, traj_input)
    n = est.shape[0]
    if ref.shape[0] != n:
        return _failed(
            INVALID_INPUT,
            f"{n} predicted poses for {ref.shape[0]} ground-truth poses",
            n,
            align,
            traj_input,
        )
    if n < 2:
        return _failed(
            DEGENERATE, f"trajectory metrics need >= 2 poses, got {n}", n, align, traj_input
        )
    if traj_input == "w2c":
        est, ref = rigid_inverse(est), rigid_inverse(ref)
    if align != "none":
        try:  # the same degeneracy rule as the point-map Umeyama, checked before evo
            umeyama_sim3(est[:, :3, 3], ref[:, :3, 3])
        except MetricError as exc:
            return _failed(exc.status, f"trajectory {exc}", n, align, traj_input)
    try:
        out = _evo_errors(est, ref, align, return_aligned)
    except MetricError as exc:
        return _failed(exc.status, str(exc), n, align, traj_input)
    out.update({"n_poses": n, "rpe_pairs": n - 1, "align": align, "traj_input": traj_input})
    out.update({"status": OK, "message": ""})
    return out


def _evo_errors(est: np.ndarray, ref: np.ndarray, align: str, keep: bool) -> dict[str, Any]:
    _, geometry, metrics, trajectory = _evo()
    ref_traj = trajectory.PosePath3D(poses_se3=[p.copy() for p in ref])
    est_traj = trajectory.PosePath3D(poses_se3=[p.copy() for p in est])
    aligned = copy.deepcopy(est_traj)  # evo aligns in place
    alignment: dict[str, Any] | None = None
    try:
        if align in ("sim3", "se3", "sim3_then_origin"):
            rot, trans, scale = aligned.align(ref_traj, correct_scale=align != "se3")
            alignment = {
                "scale": float(scale),
                "rotation": np.asarray(rot).tolist(),
                "translation": np.asarray(trans).tolist(),
            }
            if align == "sim3_then_origin":
                alignment["origin"] = np.asarray(aligned.align_origin(ref_traj)).tolist()
    except geometry.GeometryException as exc:
        raise MetricError(DEGENERATE, f"evo could not align the trajectory: {exc}") from exc

    def stat(metric) -> float:
        metric.process_data((copy.deepcopy(ref_traj), copy.deepcopy(aligned)))
        return float(metric.get_statistic(metrics.StatisticsType.rmse))

    rel = metrics.PoseRelation
    rpe = {"delta": 1, "delta_unit": metrics.Unit.frames, "all_pairs": False}
    out = {
        "ate": stat(metrics.APE(pose_relation=rel.translation_part)),
        "are": stat(metrics.APE(pose_relation=rel.rotation_angle_deg)),
        "rpe_trans": stat(metrics.RPE(pose_relation=rel.translation_part, **rpe)),
        "rpe_rot": stat(metrics.RPE(pose_relation=rel.rotation_angle_deg, **rpe)),
        "alignment": alignment,
    }
    if keep:
        out["aligned"] = np.stack([np.array(p) for p in aligned.poses_se3])
    return out
