"""CPU cost of each metric group on a large synthetic scene (the 800-view dense setting).

`time_metrics` renders one procedural scene with exact ground truth at a small resolution (the
metric cost depends on the number of views, pairs and points, not on image detail), derives noisy
predictions from it (`avggt_bench.models.scene_predictions.noisy_predictions`), and times each
metric function on them with `perf_counter` (best of `repeats`, after an untimed warm-up pass of
every metric on a 12-view slice):

* `pose_s`: `relative_pose_errors` over all N(N−1)/2 pairs + RRA/RTA/AUC at 3/5/15/30;
* `trajectory_s`: `trajectory_errors` (evo; Sim(3), ATE / ARE / RPE) over the N poses;
* `points_align_s`: Umeyama Sim(3) + Open3D ICP (0.1 m) on up to `max_points` correspondences
  (one seeded draw for both clouds keeps the correspondence; `icp=True`);
* `points_acc_comp_s`: `accuracy_completeness` of the aligned cloud, both ways;
* `points_nc_s`: Open3D normals on both aligned clouds + normal consistency (`normals=True`);
* `depth_s`: `depth_errors` over all frames (one `depth_alignment` fit for the sequence).

`python -m avggt_bench.metrics.time_metrics --views 800 --out results/bench/cpu` prints a table and
writes `metrics_timing.csv` / `metrics_timing.md` there.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avggt_bench.data.cameras import rigid_inverse, unproject
from avggt_bench.metrics import points as pts
from avggt_bench.metrics.depth import depth_errors
from avggt_bench.metrics.geometry import as_f64, as_poses_4x4, umeyama_sim3
from avggt_bench.metrics.pose import DEFAULT_THRESHOLDS, pose_table, relative_pose_errors
from avggt_bench.metrics.trajectory import trajectory_errors

TIMED = ("pose_s", "trajectory_s", "points_align_s", "points_acc_comp_s", "points_nc_s", "depth_s")
CSV_NAME, MD_NAME = "metrics_timing.csv", "metrics_timing.md"


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def time_metrics(
    num_views: int = 800,
    *,
    width: int = 48,
    height: int = 36,
    seed: int = 0,
    max_points: int = 1_000_000,
    icp: bool = True,
    normals: bool = True,
    depth_alignment: str = "scale_shift_l1",
    repeats: int = 1,
) -> dict[str, float]:
    """Seconds per metric group (keys in `TIMED`; NaN for a group turned off or without Open3D)
    on one `num_views`-view synthetic orbit of `width`×`height` pixels, plus the setting:
    `num_views`, `width`, `height`, `num_pairs`, `num_points`, `num_depth_pixels`, `render_s`,
    `torch_threads`, `cpu_count`. Predictions carry 1° camera rotation, 1 cm centre and 1 % depth
    noise (`noisy_predictions`, seeded)."""
    from avggt_bench.data.synthetic import SyntheticConfig, render_scene

    start = time.perf_counter()
    scene = render_scene(
        SyntheticConfig(num_views=num_views, width=width, height=height, seed=seed)
    )
    render_s = time.perf_counter() - start
    options = {
        "max_points": max_points,
        "icp": icp,
        "normals": normals,
        "depth_alignment": depth_alignment,
        "seed": seed,
    }
    # warm-up on a 12-view slice (first-call allocations, lazy imports, thread pools)
    _measure(scene.subset(range(min(12, num_views))), **{**options, "max_points": 2000}, repeats=1)
    out, sizes = _measure(scene, **options, repeats=repeats)
    out.update(
        {
            "num_views": float(num_views),
            "width": float(width),
            "height": float(height),
            "num_pairs": float(num_views * (num_views - 1) // 2),
            **sizes,
            "render_s": render_s,
            "torch_threads": float(torch.get_num_threads()),
            "cpu_count": float(os.cpu_count() or 0),
        }
    )
    return out


def _measure(
    scene: Any,
    *,
    max_points: int,
    icp: bool,
    normals: bool,
    depth_alignment: str,
    seed: int,
    repeats: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per metric group on `scene` with noisy predictions; and the problem sizes."""
    from avggt_bench.models.scene_predictions import noisy_predictions

    # π³-style output in the ground-truth world (identity similarity): the clouds start close,
    # as they are after alignment; a far-off cloud makes every NN query much slower
    pred = noisy_predictions(
        scene, "pi3", rotation_deg=1.0, centre_sigma=0.01, depth_sigma=0.01, seed=seed
    )
    gt_w2c = as_poses_4x4(scene.extrinsics)
    pr_w2c = as_poses_4x4(pred.extrinsics[0])
    out: dict[str, float] = dict.fromkeys(TIMED, float("nan"))

    def pose() -> dict[str, float]:
        err = relative_pose_errors(pr_w2c, gt_w2c, order="vggt")
        return pose_table(err.rot_deg, err.trans_deg, DEFAULT_THRESHOLDS)

    out["pose_s"], _ = _best(pose, repeats)
    out["trajectory_s"], traj = _best(
        lambda: trajectory_errors(rigid_inverse(pr_w2c), rigid_inverse(gt_w2c)), repeats
    )
    if traj["status"] != "ok":
        raise RuntimeError(f"trajectory metrics failed on the timing scene: {traj['message']}")

    valid = scene.valid.numpy().astype(bool)
    gt_points = unproject(as_f64(scene.intrinsics), gt_w2c, as_f64(scene.depth))[valid]
    pr_points = as_f64(pred.world_points[0])[valid]
    pr_points, idx = pts.subsample(pr_points, max_points, seed)
    gt_points = gt_points[idx]  # one draw for both clouds keeps the correspondence
    have_open3d = pts.open3d_version() is not None
    if icp and have_open3d:
        out["points_align_s"], (aligned, _) = _best(
            lambda: pts.align_umeyama_icp(pr_points, gt_points, 0.1), repeats
        )
    else:
        aligned = umeyama_sim3(pr_points, gt_points).apply(pr_points)
    out["points_acc_comp_s"], _ = _best(
        lambda: pts.accuracy_completeness(aligned, gt_points), repeats
    )
    if normals and have_open3d:
        out["points_nc_s"], _ = _best(lambda: pts.normal_consistency(aligned, gt_points), repeats)

    pr_depth = as_f64(pred.depth[0, ..., 0])
    out["depth_s"], depth = _best(
        lambda: depth_errors(
            pr_depth, as_f64(scene.depth), valid, alignment=depth_alignment, per="sequence"
        ),
        repeats,
    )
    if depth["status"] != "ok":
        raise RuntimeError(f"depth metrics failed on the timing scene: {depth['message']}")
    sizes = {"num_points": float(len(pr_points)), "num_depth_pixels": float(depth["n_valid"])}
    return out, sizes


ROWS = (
    ("pose_s", "pose: relative errors + RRA/RTA/AUC", "num_pairs", "pairs"),
    ("trajectory_s", "trajectory: Sim(3) ATE/ARE/RPE (evo)", "num_views", "poses"),
    ("points_align_s", "points: Umeyama + ICP 0.1 m (Open3D)", "num_points", "points"),
    ("points_acc_comp_s", "points: Acc/Comp (cKDTree, both ways)", "num_points", "points"),
    ("points_nc_s", "points: normals + NC (Open3D)", "num_points", "points"),
    ("depth_s", "depth: AbsRel/δ, one L1 scale&shift", "num_depth_pixels", "pixels"),
)


def timing_rows(result: dict[str, float]) -> list[dict[str, Any]]:
    """One row per metric group: metric, size, seconds."""
    return [
        {
            "metric": key.removesuffix("_s"),
            "what": what,
            "size": int(result[size_key]),
            "unit": unit,
            "seconds": round(result[key], 4) if np.isfinite(result[key]) else None,
        }
        for key, what, size_key, unit in ROWS
    ]


def write_timing(result: dict[str, float], out_dir: str | Path) -> tuple[Path, Path]:
    """`metrics_timing.csv` (one row per group) and `metrics_timing.md` (table + setting)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = timing_rows(result)
    csv_path, md_path = out / CSV_NAME, out / MD_NAME
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*rows[0], "num_views", "width", "height"])
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "num_views": int(result["num_views"]),
                    "width": int(result["width"]),
                    "height": int(result["height"]),
                }
            )
    md_path.write_text(_markdown(result, rows))
    return csv_path, md_path


def _markdown(result: dict[str, float], rows: list[dict[str, Any]]) -> str:
    lines = [
        f"# Metric timing, {int(result['num_views'])} views (CPU)",
        "",
        f"Synthetic orbit rendered at {int(result['width'])}×{int(result['height'])} px "
        f"({result['render_s']:.1f} s to render), noisy ground-truth-derived predictions; "
        f"{int(result['torch_threads'])} torch threads, {int(result['cpu_count'])} CPUs, "
        f"{platform.processor() or platform.machine()}. "
        "Generated by `python -m avggt_bench.metrics.time_metrics`.",
        "",
        "| metric | what | size | seconds |",
        "|---|---|---:|---:|",
    ]
    for r in rows:
        sec = "n/a" if r["seconds"] is None else f"{r['seconds']:.3f}"
        lines.append(f"| {r['metric']} | {r['what']} | {r['size']:,} {r['unit']} | {sec} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        prog="python -m avggt_bench.metrics.time_metrics",
        description="Time every metric group on a large synthetic scene (CPU).",
    )
    parser.add_argument("--views", type=int, default=800)
    parser.add_argument("--width", type=int, default=48)
    parser.add_argument("--height", type=int, default=36)
    parser.add_argument("--max-points", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-icp", action="store_true", help="skip Umeyama + ICP")
    parser.add_argument("--no-normals", action="store_true", help="skip normals + NC")
    parser.add_argument("--out", type=Path, default=None, help="folder for the CSV and markdown")
    args = parser.parse_args(argv)
    result = time_metrics(
        args.views,
        width=args.width,
        height=args.height,
        seed=args.seed,
        max_points=args.max_points,
        icp=not args.no_icp,
        normals=not args.no_normals,
        repeats=args.repeats,
    )
    print(_markdown(result, timing_rows(result)))
    if args.out is not None:
        for path in write_timing(result, args.out):
            print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
