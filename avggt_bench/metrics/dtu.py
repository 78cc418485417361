"""DTU's official evaluation kit: the scan's evaluation files (observation mask, bounding box,
plane, reference scan), the Python port of the MATLAB Acc / Comp / Overall (millimetres), its seeded
radius downsampling, and the points group's DTU metrics of one scene (`dtu_overall`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from avggt_bench.data.scene import Scene
from avggt_bench.metrics.evaluation_protocol import Protocol
from avggt_bench.metrics.geometry import INVALID_INPUT, NO_VALID, MetricError
from avggt_bench.metrics.points import cloud_array, import_open3d, nearest


def radius_downsample(points: np.ndarray, radius: float, seed: int) -> np.ndarray:
    """Visit points in a seeded shuffled order; a point still kept removes every other point
    within distance ≤ `radius`. Returns the kept points (in visiting order)."""
    order = np.random.default_rng(seed).permutation(points.shape[0])
    pts = points[order]
    pairs = cKDTree(pts).query_pairs(radius, output_type="ndarray")  # i < j: i visited first
    kept = np.ones(pts.shape[0], dtype=bool)
    if pairs.size:
        pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]
        starts = np.searchsorted(pairs[:, 0], np.arange(pts.shape[0] + 1))
        for i in np.unique(pairs[:, 0]):
            if kept[i]:
                kept[pairs[starts[i] : starts[i + 1], 1]] = False
    return pts[kept]


def load_dtu_eval(root: str | Path, scan: int) -> dict[str, Any]:
    """The official DTU evaluation files of one scan (millimetres; layout: datasets/README.md,
    section 'DTU'): `obs_mask`, `bbox`, `res` from `ObsMask/ObsMask{scan}_10.mat`, `plane` from
    `ObsMask/Plane{scan}.mat`, `stl_mm` (`[N, 3]`) from `Points/stl/stl{scan:03d}_total.ply` (read
    with Open3D)."""
    from scipy.io import loadmat

    root = Path(root).expanduser()
    files = {
        "obs": root / "ObsMask" / f"ObsMask{scan}_10.mat",
        "plane": root / "ObsMask" / f"Plane{scan}.mat",
        "stl": root / "Points" / "stl" / f"stl{scan:03d}_total.ply",
    }
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise MetricError(
            "invalid_input",
            f"DTU official evaluation files missing: {', '.join(missing)}; expected "
            "<dtu_eval_root>/Points/stl/stlNNN_total.ply and ObsMask/ObsMask{N}_10.mat, "
            "ObsMask/Plane{N}.mat (datasets/README.md, section 'DTU')",
        )
    obs = loadmat(files["obs"])
    stl = np.asarray(
        import_open3d().io.read_point_cloud(str(files["stl"])).points, dtype=np.float64
    )
    return {
        "obs_mask": np.asarray(obs["ObsMask"]).astype(bool),
        "bbox": np.asarray(obs["BB"], dtype=np.float64).reshape(2, 3),
        "res": float(np.asarray(obs["Res"]).reshape(-1)[0]),
        "plane": np.asarray(loadmat(files["plane"])["P"], dtype=np.float64).reshape(-1),
        "stl_mm": stl,
    }


def dtu_official(
    pred_mm: Any,
    stl_mm: Any,
    obs_mask: np.ndarray,
    bbox: np.ndarray,
    res: float,
    plane: np.ndarray,
    *,
    seed: int = 0,
    downsample: float = 0.2,
    max_dist: float = 20.0,
    bbox_margin: str = "python_port",
) -> dict[str, Any]:
    """Official DTU Acc / Comp / Overall in millimetres (the MATLAB original's Python port).

    pred_mm, stl_mm: `[N, 3]` clouds in mm, DTU world frame; obs_mask: boolean voxel grid indexed
    [x, y, z]; bbox: `[[min], [max]]`; res: voxel size; plane: 4-vector, x above when P·[x, 1] > 0.
    bbox_margin: `python_port` (keep BB_min − 60 ≤ p < BB_max + 120) or `symmetric` (± 60).
    """
    pred, stl = cloud_array(pred_mm), cloud_array(stl_mm)
    bb = np.asarray(bbox, dtype=np.float64)
    down = radius_downsample(pred, downsample, seed)
    upper = {"python_port": 120.0, "symmetric": 60.0}[bbox_margin]
    inside = ((down >= bb[0] - 60.0) & (down < bb[1] + upper)).all(axis=1)
    data_in = down[inside]
    grid = np.round((data_in - bb[0]) / res).astype(np.int64)  # half to even
    shape = np.asarray(obs_mask.shape)
    in_grid = ((grid >= 0) & (grid < shape)).all(axis=1)
    obs = np.zeros(len(data_in), dtype=bool)
    g = grid[in_grid]
    obs[in_grid] = np.asarray(obs_mask, dtype=bool)[g[:, 0], g[:, 1], g[:, 2]]
    data_obs = data_in[obs]
    above = stl[np.c_[stl, np.ones(len(stl))] @ np.asarray(plane, dtype=np.float64) > 0]
    if len(data_obs) == 0 or len(data_in) == 0 or len(above) == 0:
        raise MetricError(NO_VALID, "DTU evaluation: no points left after box, mask or plane")
    d_acc, _ = nearest(data_obs, stl)
    d_comp, _ = nearest(above, data_in)
    acc_kept, comp_kept = d_acc[d_acc < max_dist], d_comp[d_comp < max_dist]
    acc = float(acc_kept.mean()) if acc_kept.size else float("nan")
    comp = float(comp_kept.mean()) if comp_kept.size else float("nan")
    return {
        "dtu_acc": acc,
        "dtu_comp": comp,
        "dtu_overall": (acc + comp) / 2,
        "n_down": len(down),
        "n_in_box": len(data_in),
        "n_observed": len(data_obs),
        "n_reference_above": len(above),
        "n_acc_kept": int(acc_kept.size),
        "n_comp_kept": int(comp_kept.size),
    }


def dtu_scene_metrics(
    aligned: np.ndarray, scene: Scene, proto: Protocol, params: dict
) -> dict[str, float]:
    """DTU's official accuracy / completeness on the aligned cloud (metres → mm). The evaluation
    kit comes from the loader: either `scene.meta['dtu_eval']` (obs_mask, bbox, res, plane,
    optional stl_mm; else scene.points in metres) or `scene.meta['dtu_eval_root']` with the
    official files of scan{N}."""
    ev = scene.meta.get("dtu_eval")
    if ev is None and scene.meta.get("dtu_eval_root"):
        match = re.fullmatch(r"scan(\d+)", scene.scene_id)
        if match is None:
            raise MetricError(INVALID_INPUT, f"DTU scene id {scene.scene_id!r} is not scan<N>")
        ev = load_dtu_eval(scene.meta["dtu_eval_root"], int(match.group(1)))
    if ev is None:
        raise MetricError(
            INVALID_INPUT, "dtu_overall needs the official DTU files (dataset option eval_root)"
        )
    stl = ev.get("stl_mm")
    if stl is None:
        if scene.points is None:
            raise MetricError(INVALID_INPUT, "dtu_overall: no reference scan (stl) for the scene")
        stl = scene.points.cpu().numpy() * 1000.0
    out = dtu_official(
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


__all__ = ["dtu_official", "dtu_scene_metrics", "load_dtu_eval", "radius_downsample"]
