"""Export saved predictions to files any 3D viewer opens: a coloured point cloud and a scene.

    python -m avggt_bench.export <record.json | scene.npz> [--out DIR] [--points-source SRC]
        [--conf-threshold T] [--max-points N]

For each scene saved by a job run with `predictions.save=true` (every scene of a record, or one
`.npz`), writes `<out>/<scene>.ply` (the confident points, coloured by the network-input images,
grey when none were saved) and `<out>/<scene>.glb` (the same points plus one camera frustum per
view, line geometry coloured from blue at the first view to red at the last). The default `<out>`
is `<records>/<run_id>.exports/`, beside the predictions folder.

The points are those the metrics read (`metrics/adapters.py`): `pred_points` in the model's own
world from `point_head` or `depth_unproject`, kept by `confident` (the depth confidence against
the cut of the prediction's kind of confidence, `CONF_CUTS`: VGGT's `1 + exp` keeps conf >= 3,
π³'s sigmoid keeps conf > 0.1). The defaults follow the record's preset where there is one (its
`outputs.points_source`; a ScanNet Chamfer preset's depth-unprojected cloud and its
`outputs.conf_threshold`, as `metrics/groups.py` scores them). The `.ply` holds the points as
they are (OpenCV axes); in the `.glb` each geometry's node turns OpenCV's y-down,
z-forward axes into glTF's y-up (docs/conventions.md), so viewers show the scene upright.
"""

from __future__ import annotations

import argparse
import colorsys
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avggt_bench.errors import AvggtError, ConfigError, DataError
from avggt_bench.metrics import adapters
from avggt_bench.metrics.geometry import MetricError
from avggt_bench.records import read_record
from avggt_bench.records.saved_predictions import (
    FOLDER_SUFFIX,
    SUFFIX,
    SavedScene,
    exports_dir,
    load_scene,
    predictions_dir,
    saved_scenes,
)

MAX_POINTS = 2_000_000
SEED = 0  # of the subsample when a cloud has more than --max-points points
GREY = 128  # colour of every point when the scene saved no images
FRUSTUM_SCALE = 0.05  # frustum depth: 5 % of the median distance of the points to their centroid
OPENCV_TO_GLTF = np.diag([1.0, -1.0, -1.0, 1.0])  # x right, y down, z forward -> y up, z back


@dataclass
class Choice:
    """Which points to export and why (the record's preset, the command line or the defaults)."""

    points_source: str = "point_head"
    conf_threshold: float | None = None  # None: the default of the prediction's kind
    why: str = "default"


@dataclass
class Cloud:
    """The exported points `[N, 3]` float64, their colours `[N, 3]` uint8, and how they were
    chosen (counts and the confidence rule, in words)."""

    points: np.ndarray
    colors: np.ndarray
    total: int
    confident: int
    nonfinite: int
    rule: str
    subsampled_from: int | None = None
    conf_range: tuple[float, float] | None = None  # of the finite confidences, said when none kept

    def summary(self) -> str:
        """One line: how many points of how many were kept, and why."""
        text = f"kept {len(self.points)} of {self.total} points ({self.rule}"
        if self.nonfinite:
            text += f"; {self.nonfinite} non-finite dropped"
        if not self.confident and self.conf_range is not None:
            text += f"; the confidences span {self.conf_range[0]:.4g}..{self.conf_range[1]:.4g}"
        if self.subsampled_from is not None:
            text += f"; {self.subsampled_from} subsampled to {len(self.points)}, seed {SEED}"
        return text + ")"


@dataclass
class Written:
    """What exporting one scene wrote."""

    scene_id: str
    ply: Path | None  # None when no point passed the cut (trimesh writes no empty cloud)
    glb: Path
    cloud: Cloud
    views: int


def preset_choice(record: dict[str, Any]) -> Choice:
    """The points source and confidence cut the record's preset scores (defaults without one)."""
    from avggt_bench.metrics.evaluation_protocol import Protocol

    spec = (record.get("config") or {}).get("dataset") or {}
    if not isinstance(spec, dict) or "task" not in spec:
        return Choice(why="default: the record has no protocol preset")
    try:
        proto = Protocol.from_preset(spec)
    except ConfigError as exc:
        return Choice(why=f"default: the record's preset does not validate ({exc})")
    name = spec.get("name", "?")
    tau = proto.outputs.get("conf_threshold")
    tau = None if tau is None else float(tau)
    if proto.task == "scannet_recon":  # groups._scannet_cd_group: depth-unprojected points
        return Choice("depth_unproject", tau, f"preset {name}'s Chamfer cloud")
    return Choice(str(proto.outputs["points_source"]), None, f"preset {name}'s points")


def _rule(pred: Any, threshold: float | None) -> tuple[float, str]:
    default, inclusive = adapters.CONF_CUTS[pred.conf_kind]
    tau = default if threshold is None else float(threshold)
    origin = f"{pred.conf_kind} default" if threshold is None else "chosen"
    return tau, f"depth_conf {'>=' if inclusive else '>'} {tau:g}, {origin}"


def select_points(
    saved: SavedScene,
    points_source: str = "point_head",
    conf_threshold: float | None = None,
    max_points: int = MAX_POINTS,
) -> Cloud:
    """The confident, finite points of a saved scene with their image colours, in raster order
    (view, row, column); a seeded subsample (order kept) when more than `max_points`."""
    pred = saved.predictions
    try:
        pts = adapters.pred_points(pred, points_source, "world")
        if pred.depth_conf is None:
            keep = np.ones(pts.shape[:3], dtype=bool)
            tau, rule = None, "no confidence saved: every point"
        else:
            tau, rule = _rule(pred, conf_threshold)
            keep = adapters.confident(pred, tau)
    except MetricError as exc:
        raise DataError(f"{saved.path}: cannot export {points_source} points: {exc}") from exc
    colors = _colours(saved.images, pts.shape[:3])
    finite = np.isfinite(pts).all(-1)
    chosen = keep & finite
    cloud = Cloud(
        points=pts[chosen],
        colors=colors[chosen],
        total=int(keep.size),
        confident=int(keep.sum()),
        nonfinite=int((keep & ~finite).sum()),
        rule=f"{points_source}, {rule}",
    )
    if not cloud.confident and pred.depth_conf is not None:
        conf = adapters.pred_conf(pred)
        conf = conf[np.isfinite(conf)]
        cloud.conf_range = (float(conf.min()), float(conf.max())) if conf.size else None
    if len(cloud.points) > max_points:
        idx = np.sort(np.random.default_rng(SEED).choice(len(cloud.points), max_points, False))
        cloud.subsampled_from = len(cloud.points)
        cloud.points, cloud.colors = cloud.points[idx], cloud.colors[idx]
    return cloud


def _colours(images: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """`[S, H, W, 3]` uint8 colours: the saved images, or grey when none match the maps."""
    if images is not None and images.shape[:3] == tuple(shape):
        return np.asarray(images, dtype=np.uint8)
    return np.full((*shape, 3), GREY, dtype=np.uint8)


def frustum_size(points: np.ndarray, centres: np.ndarray) -> float:
    """A frustum depth that suits the scene: `FRUSTUM_SCALE` of the median distance of the points
    to their centroid (of the camera centres when no point is kept; 1 when all coincide)."""
    cloud = points if len(points) else centres
    spread = float(np.median(np.linalg.norm(cloud - cloud.mean(0), axis=1))) if len(cloud) else 0
    return FRUSTUM_SCALE * spread if np.isfinite(spread) and spread > 0 else FRUSTUM_SCALE


def frustum_segments(
    c2w: np.ndarray, k: np.ndarray | None, hw: tuple[int, int], size: float
) -> np.ndarray:
    """Line segments `[8, 2, 3]` of one camera's frustum in the world: apex to the four image
    corners at depth `size`, and the image rectangle (corners at pixel edges, centres at integer
    coordinates as in `data.cameras.unproject`). Without intrinsics: a 60° field of view."""
    h, w = hw
    if k is None:
        f = 0.5 * max(h, w) / np.tan(np.radians(30.0))
        k = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1.0]])
    pix = np.array([[-0.5, -0.5, 1], [w - 0.5, -0.5, 1], [w - 0.5, h - 0.5, 1], [-0.5, h - 0.5, 1]])
    corners = (pix @ np.linalg.inv(k).T) * size  # camera frame, z = size
    corners = corners @ c2w[:3, :3].T + c2w[:3, 3]
    apex = c2w[:3, 3]
    rays = [(apex, c) for c in corners]
    rim = [(corners[i], corners[(i + 1) % 4]) for i in range(4)]
    return np.array(rays + rim, dtype=np.float64)


def trajectory_colours(n: int) -> np.ndarray:
    """`[n, 4]` uint8 RGBA from blue (first view) to red (last view) through the hues."""
    hues = np.linspace(2 / 3, 0.0, n) if n > 1 else np.array([2 / 3])
    rgb = [colorsys.hsv_to_rgb(float(h), 1.0, 1.0) for h in hues]
    return np.hstack([np.round(np.array(rgb) * 255), np.full((n, 1), 255)]).astype(np.uint8)


def export_scene(saved: SavedScene, out_dir: Path, choice: Choice, max_points: int) -> Written:
    """Write `<out_dir>/<scene>.ply` and `<scene>.glb` for one saved scene."""
    import trimesh

    cloud = select_points(saved, choice.points_source, choice.conf_threshold, max_points)
    pred = saved.predictions
    c2w = adapters.as_f64(pred.camera_to_world()[0])
    ks = None if pred.intrinsics is None else adapters.as_f64(pred.intrinsics[0])
    size = frustum_size(cloud.points, c2w[:, :3, 3])
    out_dir.mkdir(parents=True, exist_ok=True)
    name = saved.path.stem if saved.path is not None else saved.scene_id
    ply, glb = out_dir / f"{name}.ply", out_dir / f"{name}.glb"
    scene = trimesh.Scene()
    if len(cloud.points):
        rgba = np.hstack([cloud.colors, np.full((len(cloud.colors), 1), 255, np.uint8)])
        points = trimesh.PointCloud(cloud.points, colors=rgba)
        _write(ply, points.export(file_type="ply"))
        scene.add_geometry(points, geom_name="points", transform=OPENCV_TO_GLTF)
    else:  # trimesh cannot write a cloud without points; a stale file must not stay either
        ply.unlink(missing_ok=True)
    colours = trajectory_colours(len(c2w))
    for i, pose in enumerate(c2w):
        k = None if ks is None else ks[i]
        path = trimesh.load_path(frustum_segments(pose, k, pred.image_hw, size))
        path.colors = np.tile(colours[i], (len(path.entities), 1))
        scene.add_geometry(path, geom_name=f"camera_{i:03d}", transform=OPENCV_TO_GLTF)
    _write(glb, scene.export(file_type="glb"))
    return Written(saved.scene_id, ply if len(cloud.points) else None, glb, cloud, len(c2w))


def _write(path: Path, data: bytes) -> None:
    """Write through a temporary file and rename, so an interrupted export leaves no half file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# ----------------------------------------------------------------------------- inputs


def read_record_file(path: Path) -> dict[str, Any]:
    """A record JSON, or DataError saying what the file is not."""
    try:
        record = read_record(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such record; pass a record .json or a saved .npz") from None
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path} is not a readable record ({type(exc).__name__}: {exc}); pass a job's "
            "record <records>/<run_id>.json or one of its <run_id>.predictions/<scene>.npz"
        ) from exc
    if not isinstance(record, dict) or "run_id" not in record or "config" not in record:
        raise DataError(
            f"{path} is JSON but not a job record (no run_id/config); pass a job's record "
            "<records>/<run_id>.json"
        )
    return record


def scene_files(path: Path) -> tuple[list[Path], dict[str, Any] | None, Path]:
    """(scene files to export, the record if known, the default output folder) for a record
    `.json`, its `.predictions` folder or one `.npz`."""
    path = Path(path)
    if path.is_dir() and path.name.endswith(FOLDER_SUFFIX):
        path = path.with_name(path.name.removesuffix(FOLDER_SUFFIX) + ".json")
    if path.suffix == ".json":
        record = read_record_file(path)
        files = list(saved_scenes(path).values())
        if not files:
            raise DataError(
                f"{path.name}: no saved predictions in {predictions_dir(path)}; run the job again "
                "with predictions.save=true to keep them"
            )
        return files, record, exports_dir(path)
    if path.suffix == SUFFIX:
        if not path.is_file():
            raise DataError(f"{path}: no such predictions file; pass a record .json or a .npz")
        folder = path.parent
        record = None
        if folder.name.endswith(FOLDER_SUFFIX):
            run = folder.name.removesuffix(FOLDER_SUFFIX)
            record_path = folder.with_name(run + ".json")
            if record_path.is_file():
                record = read_record_file(record_path)
            return [path], record, exports_dir(record_path)
        return [path], None, folder / "exports"
    raise DataError(
        f"{path}: expected a job record (.json), its .predictions folder or a saved scene (.npz)"
    )


def export(
    path: Path,
    out: Path | None = None,
    points_source: str | None = None,
    conf_threshold: float | None = None,
    max_points: int = MAX_POINTS,
) -> list[Written]:
    """Export every scene of a record, or one saved scene; printing what was kept and written."""
    if points_source is not None and points_source not in adapters.POINT_SOURCES:
        raise ConfigError(
            f"--points-source {points_source!r}; valid: {', '.join(adapters.POINT_SOURCES)}"
        )
    if max_points < 1:
        raise ConfigError(f"--max-points must be at least 1, got {max_points}")
    files, record, default_out = scene_files(path)
    choice = preset_choice(record) if record is not None else Choice()
    if points_source is not None:
        choice.points_source, choice.why = points_source, "chosen"
        if conf_threshold is None and choice.points_source == "point_head":
            choice.conf_threshold = None  # a Chamfer preset's cut belongs to its own cloud
    if conf_threshold is not None:
        choice.conf_threshold = float(conf_threshold)
    out_dir = Path(out) if out is not None else default_out
    print(f"points: {choice.points_source} ({choice.why}); writing to {out_dir}")
    written = []
    for file in files:
        saved = load_scene(file)
        result = export_scene(saved, out_dir, choice, max_points)
        print(f"{result.scene_id}: {result.cloud.summary()}")
        n = len(result.cloud.points)
        if result.ply is None:
            print("  no .ply: no point passes the cut (a lower --conf-threshold keeps more)")
        else:
            print(f"  {result.ply} ({_size(result.ply)}, {n} points)")
        print(f"  {result.glb} ({_size(result.glb)}, {n} points, {result.views} camera frusta)")
        written.append(result)
    return written


def _size(path: Path) -> str:
    n = path.stat().st_size
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m avggt_bench.export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "path", type=Path, help="a record .json (every saved scene) or one saved scene .npz"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="default: <records>/<run_id>.exports"
    )
    parser.add_argument(
        "--points-source",
        choices=adapters.POINT_SOURCES,
        default=None,
        help="default: the record's preset's, else point_head",
    )
    parser.add_argument(
        "--conf-threshold",
        type=float,
        default=None,
        help="confidence cut (default: 3 inclusive for 1+exp confidences, 0.1 exclusive for "
        "sigmoid ones, or the preset's)",
    )
    parser.add_argument(
        "--max-points",
        type=int,
        default=MAX_POINTS,
        help=f"seeded subsample above this many points (default {MAX_POINTS:,})",
    )
    args = parser.parse_args(argv)
    try:
        export(args.path, args.out, args.points_source, args.conf_threshold, args.max_points)
    except AvggtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
