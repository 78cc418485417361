"""Camera pose metrics over all frame pairs.

Relative rotation and translation-direction errors for every unordered pair i < j (i the outer
loop, as `torch.combinations` enumerates them), in degrees, computed in float64 and fully
vectorised (800 views = 319,600 pairs); RRA/RTA@τ and AUC@T by the official histogram definition
(VGGT's `evaluation/test_co3d.py` `calculate_auc_np`).

Pair orders (`order`, the preset's `compat.pair_order`; docs/conventions.md has a table), over
world-to-camera poses E:

* `vggt`: `E_i·inv(E_j)` on the poses as given. This is VGGT's current official evaluation
  (`evaluation/test_co3d.py`, `se3_to_relative_pose_error`, since upstream commit 4b8be14 "fix a
  small bug in eval"; see facebookresearch/vggt issue #229).
* `camera_i`: the same formula under its older name here (the baseline expressed in camera i);
  an alias of `vggt`, kept so that existing presets and records stay readable.
* `pi3`: `E_j·inv(E_i)`, as π³'s evaluation code writes it.
* `vggt_first_camera_legacy`: VGGT's evaluation before 4b8be14: both pose sets re-expressed in
  their first camera, then `inv(E_i)·E_j`. Kept to reproduce numbers computed that way; it is not
  the relative pose of w2c cameras and depends on camera 0 (a non-finite camera 0 fails every pair).

The forms agree on exact predictions and differ otherwise: `vggt` and `pi3` give the same
rotation errors and different translation errors; the legacy form differs in both (on 10 random
cameras with 5° rotation noise, by up to 18° in a pair's rotation error and 0.18 in AUC@30).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from avggt_bench.data.cameras import to_4x4
from avggt_bench.metrics.geometry import as_f64, project_so3
from avggt_bench.models.vggt.pose_encoding import mat_to_quat

EPS = 1e-15
FAILURE_DEG = float(np.degrees(1e6))  # non-finite errors: 1e6 rad, fail every threshold
LEGACY = "vggt_first_camera_legacy"
ORDERS = ("vggt", "pi3", "camera_i", LEGACY)
ALIASES = {"camera_i": "vggt"}  # same formula, older name


@dataclass
class PairErrors:
    """Per-pair errors (degrees) and the pair indices, i < j with i the outer loop."""

    rot_deg: torch.Tensor
    trans_deg: torch.Tensor
    i: torch.Tensor
    j: torch.Tensor
    degenerate_pairs: int

    def __iter__(self):
        """`rot_deg, trans_deg = relative_pose_errors(...)` unpacks the two error vectors."""
        return iter((self.rot_deg, self.trans_deg))


def as_w2c_4x4(poses: torch.Tensor) -> torch.Tensor:
    """`[S, 3, 4]` or `[S, 4, 4]` world-to-camera -> `[S, 4, 4]` float64 on the CPU (ValueError
    for other shapes)."""
    return torch.from_numpy(to_4x4(as_f64(poses)))


def _in_first_camera(w2c: torch.Tensor) -> torch.Tensor:
    """`E_k·inv(E_0)`: the world re-expressed in camera 0 (the legacy form's first step)."""
    rot0, t0 = w2c[0, :3, :3], w2c[0, :3, 3]
    inv0 = torch.eye(4, dtype=w2c.dtype)
    inv0[:3, :3] = rot0.T
    inv0[:3, 3] = -rot0.T @ t0
    return w2c @ inv0


def _relative(w2c: torch.Tensor, i: torch.Tensor, j: torch.Tensor, order: str):
    rot, t = w2c[:, :3, :3], w2c[:, :3, 3]
    if order == LEGACY:  # inv(E_i)·E_j = [R_iᵀR_j | R_iᵀ(t_j − t_i)]
        rot_it = rot[i].transpose(-1, -2)
        return rot_it @ rot[j], (rot_it @ (t[j] - t[i])[..., None])[..., 0]
    a, b = (j, i) if order == "pi3" else (i, j)
    rel_rot = rot[a] @ rot[b].transpose(-1, -2)  # E_a·inv(E_b) = [R_a R_bᵀ | R_a (C_b − C_a)]
    rel_t = t[a] - (rel_rot @ t[b][..., None])[..., 0]
    return rel_rot, rel_t


def relative_pose_errors(
    pred_w2c: torch.Tensor, gt_w2c: torch.Tensor, order: str = "vggt"
) -> PairErrors:
    """Rotation and translation-direction errors (degrees) over all pairs i < j (i the outer loop).

    `pred_w2c`, `gt_w2c`: world-to-camera `[S, 3, 4]` or `[S, 4, 4]`, any float dtype (promoted to
    float64, rotations projected onto SO(3)). `order`: one of `ORDERS` (module docstring; the
    default `vggt` is VGGT's current official `E_i·inv(E_j)`). Non-finite predicted poses give
    failure errors (`FAILURE_DEG`) for their pairs. Returns `PairErrors` (unpacks to
    `rot_deg, trans_deg`). Raises ValueError for mismatched frame counts or fewer than 2 frames.
    """
    if order not in ORDERS:
        raise ValueError(f"order={order!r}; valid: {', '.join(ORDERS)}")
    order = ALIASES.get(order, order)
    pred, gt = as_w2c_4x4(pred_w2c), as_w2c_4x4(gt_w2c)
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(f"{pred.shape[0]} predicted poses for {gt.shape[0]} ground-truth poses")
    if pred.shape[0] < 2:
        raise ValueError("relative pose errors need at least 2 frames")
    pred = pred.clone()
    gt = gt.clone()
    pred[:, :3, :3] = torch.from_numpy(project_so3(pred[:, :3, :3].numpy()))
    gt[:, :3, :3] = torch.from_numpy(project_so3(gt[:, :3, :3].numpy()))
    if order == LEGACY:  # inv(E_i)·E_j depends on the world frame: both in the first camera's
        gt, pred = _in_first_camera(gt), _in_first_camera(pred)
    i, j = torch.triu_indices(pred.shape[0], pred.shape[0], offset=1)
    r_gt, t_gt = _relative(gt, i, j, order)
    r_pr, t_pr = _relative(pred, i, j, order)

    q_gt = _unit(mat_to_quat(r_gt))
    q_pr = _unit(mat_to_quat(r_pr))
    c = (q_gt * q_pr).sum(-1)
    rot = torch.rad2deg(torch.arccos(torch.clamp(1 - 2 * torch.clamp(1 - c * c, min=EPS), -1, 1)))

    baseline = t_gt.norm(dim=-1)
    # identical centres leave ~1e-16 of round-off, not 0: treat them as the zero baseline (u = 0)
    zero = baseline <= 1e-9 * baseline.median() if baseline.numel() else baseline > 0
    u = torch.where(zero[:, None], 0.0, t_gt / (baseline[:, None] + EPS))
    u_hat = t_pr / (t_pr.norm(dim=-1, keepdim=True) + EPS)
    d = (u * u_hat).sum(-1)
    trans = torch.rad2deg(torch.arccos(torch.sqrt(1 - torch.clamp(1 - d * d, min=EPS))))

    rot = torch.where(torch.isfinite(rot), rot, torch.full_like(rot, FAILURE_DEG))
    trans = torch.where(torch.isfinite(trans), trans, torch.full_like(trans, FAILURE_DEG))
    return PairErrors(rot, trans, i, j, int(zero.sum()))


def _unit(q: torch.Tensor) -> torch.Tensor:
    return q / q.norm(dim=-1, keepdim=True)


def pose_auc(rot_err_deg: torch.Tensor, trans_err_deg: torch.Tensor, threshold: int) -> float:
    """AUC@T in [0, 1] by the official histogram: bins [k, k+1), the last one closed, divided by
    the total number of pairs, then the mean of the cumulative sums. Computed in the equivalent
    form (1/T)·[Σ_{τ<T} frac(m < τ) + frac(m ≤ T)] with m = max(e_R, e_t) per pair;
    NaN errors pass no threshold. `threshold`: a positive integer (the bins have integer edges)."""
    rot = torch.as_tensor(rot_err_deg).double()
    m = torch.maximum(rot, torch.as_tensor(trans_err_deg).double())
    if m.numel() == 0:
        raise ValueError("pose_auc needs at least one pair")
    if float(threshold) != int(threshold) or int(threshold) < 1:
        raise ValueError(f"AUC threshold must be a positive integer, got {threshold}")
    t = int(threshold)
    below = [(m < tau).double().mean() for tau in range(1, t)]
    below.append((m <= t).double().mean())
    return float(torch.stack(below).mean())


def accuracy_at(errors_deg: torch.Tensor, tau: float) -> float:
    """Fraction of pairs with error strictly below τ (RRA@τ / RTA@τ as a fraction)."""
    return float((torch.as_tensor(errors_deg) < tau).double().mean())


DEFAULT_THRESHOLDS = (3, 5, 15, 30)


def pose_table(
    rot_err_deg: torch.Tensor, trans_err_deg: torch.Tensor, thresholds=DEFAULT_THRESHOLDS
) -> dict[str, float]:
    """RRA@τ, RTA@τ (every τ) and AUC@τ (integer τ: its bins have integer edges) in percent
    (0-100), over the given pairs (one aggregation unit: a sequence, a category's pooled pairs,
    or all pairs pooled). Keys like `rra@5`, `auc@30`."""
    rot, trans = torch.as_tensor(rot_err_deg).double(), torch.as_tensor(trans_err_deg).double()
    out: dict[str, float] = {}
    for tau in thresholds:
        name = f"{float(tau):g}"
        out[f"rra@{name}"] = 100 * accuracy_at(rot, float(tau))
        out[f"rta@{name}"] = 100 * accuracy_at(trans, float(tau))
        if float(tau).is_integer():
            out[f"auc@{name}"] = 100 * pose_auc(rot, trans, int(tau))
    return out
