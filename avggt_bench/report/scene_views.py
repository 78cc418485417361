"""What the report's page shows of a protocol scene, as numbers: the saved predictions of a
family (a dense job and its accelerated variants, `report/families.py`), their depth brought next
to the ground truth (same pixel grid, the preset's depth alignment) and their point clouds moved
into the ground-truth world, subsampled for the page.

The drawing is `report/scene_html.py`; the page is `report/html.py`. Everything here reads the
saved `.npz` files and the record's ground truth (`records/replay.py`); nothing is re-scored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avggt_bench.records.replay import RecordScenes, check_frames
from avggt_bench.records.saved_predictions import SavedScene, exports_dir, load_scene
from avggt_bench.report.families import Family, Member

log = logging.getLogger(__name__)

MAX_VIEWS = 4  # views drawn per scene, evenly spaced over the sequence
MAX_FRAMES = 32  # frames used at most for alignment and point clouds (memory of long scenes)


@dataclass
class GroundTruth:
    """The scene's ground truth on the network-input grid (depth 0 and NaN where invalid)."""

    depth: np.ndarray  # [S, H, W], NaN where invalid
    valid: np.ndarray  # [S, H, W] bool
    points: np.ndarray  # [S, H, W, 3] in the ground-truth world
    w2c: np.ndarray  # [S, 4, 4] the ground-truth cameras (to face the first one in 3D)


@dataclass
class VariantView:
    """One variant of one scene, ready to draw: aligned depth, error, points in the GT world."""

    label: str
    depth: np.ndarray | None = None  # [S, H, W], aligned to the ground truth when it exists
    error: np.ndarray | None = None  # [S, H, W] |aligned - gt|, NaN where gt invalid
    points: np.ndarray | None = None  # [N, 3] subsampled
    colours: np.ndarray | None = None  # [N, 3] uint8
    ply: Path | None = None
    note: str = ""


@dataclass
class SceneView:
    """Everything the page draws for one scene."""

    scene_id: str
    views: list[int]
    images: np.ndarray | None  # uint8 [S, H, W, 3]
    variants: list[VariantView]
    gt: GroundTruth | None
    gt_note: str = ""
    depth_caption: str = ""
    cloud_caption: str = ""
    gt_points: np.ndarray | None = None
    gt_colours: np.ndarray | None = None
    frames: list[int] = field(default_factory=list)  # the scene's frames used, ascending
    count: int = 0  # frames of the scene

    def frame_of(self, position: int) -> int:
        """The scene's frame index of a position in the arrays (they hold `frames` only)."""
        return self.frames[position] if self.frames else position


def pick_views(count: int, most: int = MAX_VIEWS) -> list[int]:
    """Up to `most` view indices evenly spaced over `count` views (first and last included)."""
    if count <= 0:
        return []
    return sorted({round(float(x)) for x in np.linspace(0, count - 1, min(most, count))})


def frame_subset(saved: SavedScene, frames: list[int]) -> SavedScene:
    """The saved scene restricted to `frames` (every per-frame tensor and the images)."""
    count = int(saved.predictions.extrinsics.shape[1])
    index = torch.as_tensor(frames)

    def pick(t: torch.Tensor) -> torch.Tensor:
        return t[:, index] if t.dim() >= 2 and t.shape[1] == count else t

    images = None if saved.images is None else saved.images[frames]
    return SavedScene(saved.predictions.map(pick), images, saved.meta, saved.path)


def ground_truth(replay: RecordScenes, scene: Any, hw: tuple[int, int]) -> GroundTruth:
    """The ground truth on the prediction's grid (`gt_compare=input`: each view's preprocessing,
    padding invalid), as the metrics bring it there (`metrics/adapters.py::gt_on_grid`)."""
    from avggt_bench.metrics.adapters import gt_on_grid

    grid = gt_on_grid(scene, "input", replay.transforms(scene), "per_axis", hw)
    depth = np.where(grid.valid, grid.depth, np.nan)
    return GroundTruth(depth, grid.valid, grid.points(), grid.w2c)


def depth_alignment(replay: RecordScenes | None) -> tuple[str, str, dict[str, Any]]:
    """(alignment, unit, extra keyword arguments of `depth_errors`) the page uses: the preset's
    depth alignment when it scores depth (as `metrics/groups.py` does), else per-view median."""
    proto = replay.protocol if replay is not None else None
    if proto is None or "depth" not in proto.groups:
        return "median", "frame", {}
    a = proto.alignment
    kind = a["type"] if proto.task in ("video_depth", "mono_depth") else "median"
    per = a["per"] or ("frame" if proto.task == "mono_depth" else "sequence")
    extra = {"max_depth": a["max_depth"], "median_mode": proto.compat["median_mode"] or "numpy"}
    return kind, per, extra


def align_depth(
    depth: np.ndarray, gt: GroundTruth, kind: str, per: str, extra: dict[str, Any]
) -> tuple[np.ndarray, str]:
    """`s·depth + b` with the fit of `metrics/depth.py::depth_errors` per frame or sequence;
    frames without a fit stay as predicted. Returns (aligned, note on failure)."""
    from avggt_bench.metrics.depth import depth_errors

    out = depth_errors(depth, np.nan_to_num(gt.depth), gt.valid, alignment=kind, per=per, **extra)
    if out["status"] != "ok":
        return depth, f"depth not aligned ({out['status']}: {out['message']})"
    aligned = depth.copy()
    for unit in out["units"]:
        if unit["scale"] is not None:
            frames = unit["frames"]
            aligned[frames] = unit["scale"] * depth[frames] + unit["shift"]
    return aligned, ""


def subsample(mask: np.ndarray, most: int, seed: int) -> np.ndarray:
    """Flat indices of at most `most` pixels of `mask`, drawn without replacement (seeded)."""
    idx = np.flatnonzero(mask)
    if len(idx) > most:
        idx = np.sort(np.random.default_rng(seed).choice(idx, most, replace=False))
    return idx


def _points(saved: SavedScene, source: str) -> np.ndarray:
    from avggt_bench.metrics.adapters import pred_points

    pred = saved.predictions
    if source == "point_head" and pred.world_points is None:
        source = "depth_unproject"
    return pred_points(pred, source, "world")


def _into(points: np.ndarray, target: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
    """`points` moved by the Sim(3) that best maps them onto `target` at `mask` (Umeyama, on at
    most 50k seeded correspondences)."""
    from avggt_bench.metrics.geometry import umeyama_sim3

    ok = mask & np.isfinite(points).all(-1) & np.isfinite(target).all(-1)
    idx = subsample(ok, 50_000, seed)
    flat_p, flat_t = points.reshape(-1, 3), target.reshape(-1, 3)
    sim = umeyama_sim3(flat_p[idx], flat_t[idx])
    return sim.apply(flat_p).reshape(points.shape)


def ply_link(member: Member, npz: Path) -> Path | None:
    """`<records>/<run_id>.exports/<scene>.ply` when an export wrote it (else None)."""
    ply = exports_dir(member.path) / f"{npz.stem}.ply"
    return ply if ply.is_file() else None


def scene_view(
    family: Family,
    scene_id: str,
    scene: Any | None,
    replay: RecordScenes | None,
    gt_note: str = "",
    points_per_trace: int = 8000,
    seed: int = 0,
) -> SceneView:
    """Load every member's predictions of `scene_id` and bring them next to the ground truth
    (`scene`: the record's ground-truth Scene, None when unavailable, `gt_note` says why)."""
    kind, per, extra = depth_alignment(replay)
    source = "point_head"
    if replay is not None:
        source = replay.protocol.outputs.get("points_source") or source
    view = SceneView(scene_id, [], None, [], None, gt_note=gt_note)
    loaded: list[tuple[Member, SavedScene | None, str]] = []
    for m in family.members:
        if scene_id not in m.files:
            loaded.append((m, None, "no saved predictions for this scene"))
            continue
        try:
            saved = load_scene(m.files[scene_id])
            if scene is not None:
                check_frames(saved, scene)
            loaded.append((m, saved, ""))
        except Exception as exc:  # shown in the variant's place
            log.warning("%s %s: %s", m.path.name, scene_id, exc)
            loaded.append((m, None, f"{type(exc).__name__}: {exc}"))
    first = next((s for _, s, _ in loaded if s is not None), None)
    if first is None:
        view.variants = [VariantView(m.label, note=note) for m, _, note in loaded]
        return view
    count = int(first.predictions.extrinsics.shape[1])
    view.frames, view.count = pick_views(count, MAX_FRAMES), count  # bounded memory
    if len(view.frames) < count:
        loaded = [(m, s and frame_subset(s, view.frames), n) for m, s, n in loaded]
        first = frame_subset(first, view.frames)
        scene = None if scene is None else scene.subset(view.frames)
    hw = tuple(first.predictions.image_hw)
    view.images = first.images
    if scene is not None and replay is not None:
        try:
            view.gt = ground_truth(replay, scene, hw)
        except Exception as exc:
            view.gt_note = f"ground truth unavailable on the prediction grid: {exc}"
    view.views = pick_views(len(view.frames))
    if view.gt is not None:
        target, target_mask = view.gt.points, view.gt.valid
    else:  # without ground truth, every variant is moved into the first one's world
        target = _points(first, source)
        target_mask = np.isfinite(target).all(-1)
    for m, saved, note in loaded:
        out = VariantView(m.label, note=note)
        view.variants.append(out)
        if saved is None:
            continue
        out.ply = ply_link(m, m.files[scene_id])
        try:
            _fill(out, saved, view.gt, (kind, per, extra), source, (target, target_mask))
            keep = target_mask & np.isfinite(out.points).all(-1)
            idx = subsample(keep, points_per_trace, seed)
            if saved.images is not None and saved.images.shape[:3] == keep.shape:
                out.colours = saved.images.reshape(-1, 3)[idx]
            out.points = out.points.reshape(-1, 3)[idx]
        except Exception as exc:
            log.warning("%s %s: %s", m.path.name, scene_id, exc)
            out.note = f"{type(exc).__name__}: {exc}"
            out.points = None
    _captions(view, kind, per)
    if view.gt is not None:
        idx = subsample(view.gt.valid, points_per_trace, seed)
        view.gt_points = view.gt.points.reshape(-1, 3)[idx]
        if view.images is not None and view.images.shape[:3] == view.gt.valid.shape:
            view.gt_colours = view.images.reshape(-1, 3)[idx]
    return view


def _fill(
    out: VariantView,
    saved: SavedScene,
    gt: GroundTruth | None,
    alignment: tuple[str, str, dict[str, Any]],
    source: str,
    target: tuple[np.ndarray, np.ndarray],
) -> None:
    """Aligned depth, error and the full point map (`[S, H, W, 3]`) moved onto `target`."""
    from avggt_bench.metrics.adapters import pred_depth

    pred = saved.predictions
    if pred.depth is None:
        out.note = "this model saved no depth map"
    else:
        depth = pred_depth(pred)
        if gt is not None and depth.shape == gt.depth.shape:
            depth, out.note = align_depth(depth, gt, *alignment)
            out.error = np.where(gt.valid, np.abs(depth - np.nan_to_num(gt.depth)), np.nan)
        out.depth = depth
    pts = _points(saved, source)
    points, mask = target
    if pts.shape != points.shape:
        raise ValueError(f"point map {pts.shape[:3]} on another grid than {points.shape[:3]}")
    out.points = _into(pts, points, mask, seed=0)


def _captions(view: SceneView, kind: str, per: str) -> None:
    _caption_texts(view, kind, per)
    if len(view.frames) < view.count:
        used = f" Only {len(view.frames)} of the {view.count} frames (evenly spaced) are used."
        view.depth_caption += used
        view.cloud_caption += used


def _caption_texts(view: SceneView, kind: str, per: str) -> None:
    if view.gt is None:
        view.depth_caption = (
            "Predicted depth as saved (no ground truth to align to); one colour scale per scene."
        )
        view.cloud_caption = (
            "No ground truth: each variant's points are moved into the first variant's world by "
            "a Sim(3) (Umeyama) fit over their pixels."
        )
        return
    unit = "per view" if per == "frame" else "one fit for the whole sequence"
    name = {"median": "median scale"}.get(kind, kind)
    view.depth_caption = (
        f"Predicted depth after {name} alignment to the ground truth ({unit}), the alignment "
        "the metrics of this preset use for depth, or per-view median scale when the preset "
        "scores no depth. Error: |aligned prediction − ground truth| at valid ground-truth "
        "pixels (grey: no ground truth). One colour scale per scene for all depth maps, one "
        "for all error maps."
    )
    view.cloud_caption = (
        "Each variant's points moved into the ground-truth world by a Sim(3) (Umeyama) fit over "
        "the pixels with valid ground truth; only those pixels, subsampled (seeded), coloured by "
        "the input image. Click a legend entry to hide a cloud."
    )


__all__ = [
    "GroundTruth",
    "SceneView",
    "VariantView",
    "align_depth",
    "depth_alignment",
    "frame_subset",
    "ground_truth",
    "pick_views",
    "scene_view",
    "subsample",
]
