"""Saved predictions: one compressed `.npz` per scene, next to the job's record.

A job run with `predictions.save=true` keeps what the metrics read (cameras, intrinsics, depth,
world points and their confidences), the network-input images (uint8, to colour exports), the
frame list and the job's identity, so that a new metric, alignment option or preset can be scored
without running the model again (`python -m avggt_bench.rescore`), and a reconstruction can be
exported (`python -m avggt_bench.export`) or looked at (the report's `index.html`).

Layout: `<records>/<run_id>.json` has its scenes in `<records>/<run_id>.predictions/`, one file
per scene, named after the scene id (characters outside ``[A-Za-z0-9._-]`` become ``_``; the id
itself is in the file's metadata). Cameras and intrinsics keep their dtype (float64 as decoded);
the dense maps are stored as `float16` by default (half the size; a re-score of a point or depth
metric is then close, not bit-exact) or `float32`, which reproduces the run's float32 maps bit
for bit. A map computed in another dtype (bfloat16 on a GPU) is stored in float32, which holds it
exactly, and cast back on load.

Files are written atomically (a hidden temporary file, fsync, rename): a killed save leaves at
most a hidden `.*.tmp` file, never a file with the final name.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avggt_bench.errors import ConfigError, DataError
from avggt_bench.models.predictions import Predictions

FORMAT_VERSION = 1
SUFFIX = ".npz"
FOLDER_SUFFIX = ".predictions"
EXPORTS_SUFFIX = ".exports"  # `python -m avggt_bench.export` writes a record's .ply/.glb there
MAP_FIELDS = ("depth", "depth_conf", "world_points", "world_points_conf")
CAMERA_FIELDS = ("extrinsics", "intrinsics", "pose_enc")
MAP_DTYPES = {"float16": np.float16, "float32": np.float32}
_TORCH = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}
_TORCH.update({"bfloat16": torch.bfloat16})
_META = "meta"
_IMAGES = "images"


@dataclass
class SavedScene:
    """One scene's saved predictions (batch of one), its input images and metadata.

    `meta` holds `run_id`, `record` (the record's file name), `config_hash`, `scene_id`,
    `dataset`, `frame_ids`, `model`, `attention`, `family`, `map_dtype`, the Predictions' own
    fields (`image_hw`, `points_frame`, `conf_kind`, `world_points_from_depth`, `sources`) and
    `dtypes` (each tensor's dtype in the run).
    """

    predictions: Predictions
    images: np.ndarray | None  # uint8 [S, H, W, 3], the network input
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def scene_id(self) -> str:
        return str(self.meta["scene_id"])

    @property
    def exact(self) -> bool:
        """True when every map was saved without rounding (re-scoring is then bit-exact)."""
        return self.meta.get("map_dtype") == "float32"


def predictions_dir(record_path: Path) -> Path:
    """`<records>/<run_id>.predictions`: the scenes of the record at `record_path`."""
    record_path = Path(record_path)
    return record_path.with_name(record_path.stem + FOLDER_SUFFIX)


def exports_dir(record_path: Path) -> Path:
    """`<records>/<run_id>.exports`: the record's exported `.ply` and `.glb` files."""
    record_path = Path(record_path)
    return record_path.with_name(record_path.stem + EXPORTS_SUFFIX)


def scene_file(record_path: Path, scene_id: str) -> Path:
    """Where the predictions of `scene_id` of that record go."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(scene_id)).lstrip(".") or "scene"
    return predictions_dir(record_path) / f"{name}{SUFFIX}"


def map_dtype(name: str) -> str:
    """Validate the `predictions.dtype` switch."""
    if name not in MAP_DTYPES:
        raise ConfigError(
            f"predictions.dtype={name!r} is not valid; choose float16 (half the size) or float32 "
            "(bit-exact re-scoring)"
        )
    return name


def _as_numpy(t: torch.Tensor, dtype: str | None) -> tuple[np.ndarray, str]:
    """(array to store, the tensor's own dtype name)."""
    own = str(t.dtype).removeprefix("torch.")
    t = t.detach().cpu()
    if dtype is not None:  # a dense map: the requested storage dtype
        return t.to(_TORCH[dtype]).numpy(), own
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds it exactly
        t = t.float()
    return t.numpy(), own


def images_uint8(images: torch.Tensor) -> np.ndarray:
    """Network input `[S, 3, H, W]` in [0, 1] -> uint8 `[S, H, W, 3]` (for colouring)."""
    arr = images.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).contiguous().numpy()


def encode(
    pred: Predictions,
    meta: dict[str, Any],
    images: np.ndarray | None = None,
    dtype: str = "float16",
    batch: int = 0,
) -> dict[str, np.ndarray]:
    """The arrays of one file: scene `batch` of `pred`, `images` and the metadata as JSON."""
    map_dtype(dtype)
    arrays: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for name in (*CAMERA_FIELDS, *MAP_FIELDS):
        value = getattr(pred, name)
        if value is None:
            continue
        arrays[name], dtypes[name] = _as_numpy(value[batch], dtype if name in MAP_FIELDS else None)
    if images is not None:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise DataError(f"images must be uint8 [S, H, W, 3], got {images.dtype} {images.shape}")
        arrays[_IMAGES] = images
    info = {
        **meta,
        "format_version": FORMAT_VERSION,
        "map_dtype": dtype,
        "dtypes": dtypes,
        "image_hw": list(pred.image_hw),
        "points_frame": pred.points_frame,
        "conf_kind": pred.conf_kind,
        "world_points_from_depth": pred.world_points_from_depth,
        "sources": dict(pred.sources),
    }
    arrays[_META] = np.array(json.dumps(info, sort_keys=True, default=str))
    return arrays


def save_scene(
    path: Path,
    pred: Predictions,
    meta: dict[str, Any],
    images: np.ndarray | None = None,
    dtype: str = "float16",
    batch: int = 0,
) -> int:
    """Write one scene's file atomically; returns its size in bytes."""
    arrays = encode(pred, meta, images, dtype, batch)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            _sync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path.stat().st_size


def _sync(fd: int) -> None:
    os.fsync(fd)


def read_meta(path: Path) -> dict[str, Any]:
    """The metadata of a saved scene, without reading its arrays."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data[_META]))
    except FileNotFoundError:
        raise DataError(f"{path}: no such predictions file") from None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(
            f"{path} is not a readable predictions file ({type(exc).__name__}: {exc}); it may be "
            "truncated: rerun the job with predictions.save=true to write it again"
        ) from exc


def load_scene(path: Path) -> SavedScene:
    """Read a saved scene back as `Predictions` (batch of one, each tensor in its run dtype)."""
    path = Path(path)
    meta = read_meta(path)
    if meta.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path}: predictions format {meta.get('format_version')!r}, this code reads "
            f"{FORMAT_VERSION}; re-save with this version"
        )
    tensors: dict[str, torch.Tensor | None] = {}
    images = None
    try:
        with np.load(path, allow_pickle=False) as data:
            for name in (*CAMERA_FIELDS, *MAP_FIELDS):
                if name in data.files:
                    run_dtype = _TORCH[meta["dtypes"][name]]
                    tensors[name] = torch.from_numpy(data[name]).to(run_dtype).unsqueeze(0)
                else:
                    tensors[name] = None
            if _IMAGES in data.files:
                images = data[_IMAGES]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: unreadable predictions ({type(exc).__name__}: {exc})") from exc
    known = {f.name for f in fields(Predictions)}
    pred = Predictions(
        **{k: v for k, v in tensors.items() if k in known},
        image_hw=tuple(meta["image_hw"]),
        points_frame=meta["points_frame"],
        conf_kind=meta["conf_kind"],
        world_points_from_depth=bool(meta["world_points_from_depth"]),
        sources=dict(meta.get("sources") or {}),
    )
    return SavedScene(pred, images, meta, path)


def saved_scenes(record_path: Path) -> dict[str, Path]:
    """Scene id -> file, for every complete predictions file of a record (hidden temporary
    files of an interrupted save are not listed)."""
    folder = predictions_dir(record_path)
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        if path.name.startswith("."):
            continue
        found[str(read_meta(path)["scene_id"])] = path
    return found
