"""Dataset front end: the loader registry and `get_dataset(name, root)`.

Every loader has `sequences()` (ids) and `load(sequence, frame_ids=None) -> Scene` (`frame_ids`
are positions in the sequence's native frame list). Loaders of real datasets are registered
lazily (their module is imported on first use). `build_dataset` (in `data/protocol_scenes.py`, above
the presets that validate against this registry) turns a `dataset=` config into either a plain
loader (configs without a `task`, e.g. `synthetic`, `folder`) or, for protocol presets, a
`ProtocolDataset` that iterates the preset's scenes; both have `load_views(n)`, the job's entry
point.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from avggt_bench.data.images import load_images, size_mismatch_message
from avggt_bench.data.scene import Scene
from avggt_bench.data.synthetic import TRAJECTORIES, SyntheticConfig, render_scene
from avggt_bench.errors import ConfigError, DataError
from avggt_bench.registry import Registry

log = logging.getLogger(__name__)

__all__ = [
    "DATASETS",
    "LOADERS",
    "Dataset",
    "FolderDataset",
    "SyntheticDataset",
    "get_dataset",
    "loader_class",
]


class Dataset(Protocol):
    name: str

    def sequences(self) -> list[str]: ...

    def load(self, sequence: str, frame_ids: Sequence[int] | None = None) -> Scene: ...

    def load_views(self, num_views: int) -> Scene: ...


DATASETS: Registry[Any] = Registry("dataset")

LOADERS: dict[str, tuple[str, str, str]] = {
    # name: (module, class, description)
    "co3d": ("co3d", "Co3dLoader", "CO3Dv2, pose-evaluation annotations (relative pose)"),
    "re10k": ("re10k", "Re10kLoader", "RealEstate10K camera files + extracted frames"),
    "eth3d": ("eth3d", "Eth3dLoader", "ETH3D high-res multi-view DSLR training scenes"),
    "7scenes": ("seven_scenes", "SevenScenesLoader", "7-Scenes RGB-D, registered depth"),
    "nrgbd": ("nrgbd", "NrgbdLoader", "Neural RGB-D synthetic scenes"),
    "dtu": ("dtu", "DtuLoader", "DTU MVS test scans (Spann3R preparation)"),
    "scannet": ("scannet", "ScannetLoader", "ScanNet v2 SensReader export"),
    "tum": ("tum", "TumLoader", "TUM RGB-D dynamic-object sequences"),
    "sintel": ("sintel", "SintelLoader", "MPI Sintel training sequences"),
}


def loader_class(name: str) -> type:
    """The loader class registered as `name` (importing its module on first use)."""
    if name in LOADERS:
        module, cls, _ = LOADERS[name]
        return getattr(importlib.import_module(f"avggt_bench.data.{module}"), cls)
    return DATASETS.entry(name).factory


def _lazy(name: str):
    def factory(*args: Any, **kwargs: Any) -> Any:
        return loader_class(name)(*args, **kwargs)

    return factory


for _name, (_, _, _description) in LOADERS.items():
    DATASETS.add(_name, _lazy(_name), _description)


def valid_options(cls: type) -> set[str]:
    """Constructor options a loader class accepts (for preset validation without data)."""
    return {"root", *getattr(cls, "COMMON", {}), *getattr(cls, "options", {})}


@DATASETS.register("synthetic", "procedural room with exact ground truth, any number of views")
class SyntheticDataset:
    """Procedural scenes named `seed<N>-<trajectory>` (trajectory orbit, walk or static).

    `frames` is the native frame count of every scene (the protocol's `num_views` override
    re-renders with that many views, `procedural = True`). `static` renders one orbit view and
    repeats it (a degenerate trajectory for the metrics' failure paths); `nan_pose_frames` marks
    frames invalid (`nan_pose`) so that the drop-and-record path runs end to end.
    """

    name = "synthetic"
    procedural = True
    COMMON: ClassVar[dict[str, Any]] = {
        "split": None,
        "load_depth": True,
        "load_points": False,
        "compat": None,
        "workers": None,
        "progress": None,
        "strict_counts": True,
    }
    options: ClassVar[dict[str, Any]] = {
        **{k: None for k in set(SyntheticConfig.__dataclass_fields__) - {"num_views"}},
        "frames": 16,
        "nan_pose_frames": (),
    }

    def __init__(self, root: Any = None, **params: Any) -> None:
        valid = set(self.COMMON) | set(self.options)
        unknown = sorted(set(params) - valid)
        if unknown:
            raise ConfigError(
                f"unknown synthetic dataset option(s) {unknown}; valid: {', '.join(sorted(valid))}"
            )
        self.frames = int(params.pop("frames", 16))
        self.nan_pose_frames = {int(i) for i in params.pop("nan_pose_frames", ()) or ()}
        self.loader_opts = {k: params.pop(k) for k in list(params) if k in self.COMMON}
        self.params = {k: v for k, v in params.items() if v is not None}
        if self.frames < 1:
            raise ConfigError(f"synthetic frames must be >= 1, got {self.frames}")

    def config(self, num_views: int) -> SyntheticConfig:
        return SyntheticConfig(num_views=num_views, **self.params)

    def with_frames(self, frames: int) -> SyntheticDataset:
        out = SyntheticDataset.__new__(SyntheticDataset)
        out.__dict__.update(self.__dict__)
        out.frames = int(frames)
        return out

    # ------------------------------------------------------------------ loader API

    def sequences(self) -> list[str]:
        cfg = self.config(1)
        return [f"seed{cfg.seed}-{cfg.trajectory}"]

    def expand(self, keys: Sequence[str]) -> list[tuple[str | None, list[str]]]:
        return [(None, [str(k)]) for k in keys]

    def _parse(self, sequence: str) -> tuple[int, str]:
        m = re.fullmatch(r"seed(\d+)-(\w+)", str(sequence))
        if m is None or m.group(2) not in (*TRAJECTORIES, "static"):
            raise DataError(
                f"synthetic scene id {sequence!r} is not 'seed<N>-<trajectory>' with trajectory "
                f"in {', '.join((*TRAJECTORIES, 'static'))}"
            )
        return int(m.group(1)), m.group(2)

    def has_sequence(self, sequence: str) -> bool:
        try:
            self._parse(sequence)
        except DataError:
            return False
        return True

    def native_frame_ids(self, sequence: str) -> list[int]:
        return list(range(self.frames))

    def num_frames(self, sequence: str) -> int:
        return self.frames

    def frame_validity(self, sequence: str) -> list[bool]:
        return [i not in self.nan_pose_frames for i in range(self.frames)]

    def exclusion(self, sequence: str) -> str | None:
        return None

    def category(self, sequence: str) -> str | None:
        return None

    def load(
        self,
        sequence: str | None = None,
        frame_ids: Sequence[int] | None = None,
        *,
        invalid_frames: str = "drop",
    ) -> Scene:
        if sequence is None:
            count = (max(frame_ids) + 1) if frame_ids else 16
            scene = self.load_views(count)
            return scene.subset(frame_ids) if frame_ids else scene
        from avggt_bench.data.base import FrameError

        seed, trajectory = self._parse(sequence)
        ids = list(range(self.frames)) if frame_ids is None else [int(i) for i in frame_ids]
        bad = [i for i in ids if not 0 <= i < self.frames]
        if bad:
            raise DataError(f"synthetic/{sequence}: indices {bad[:8]} outside 0..{self.frames - 1}")
        params = {**self.params, "seed": seed}
        if trajectory == "static":
            base = render_scene(SyntheticConfig(num_views=1, **{**params, "trajectory": "orbit"}))
            full = base.subset([0] * self.frames)
        else:
            full = render_scene(
                SyntheticConfig(num_views=self.frames, **{**params, "trajectory": trajectory})
            )
        dropped = [(i, "nan_pose") for i in ids if i in self.nan_pose_frames]
        if dropped and invalid_frames == "fail_scene":
            raise FrameError(
                f"synthetic/{sequence}: frame {dropped[0][0]} has a NaN pose; the preset's "
                "invalid_frames=fail_scene skips the scene",
                "nan_pose",
            )
        keep = [i for i in ids if i not in self.nan_pose_frames]
        if not keep:
            raise FrameError(f"synthetic/{sequence}: no valid frames", "no_valid_frames")
        scene = full.subset(keep)
        return replace(
            scene,
            scene_id=sequence,
            frame_indices=keep,
            dropped=dropped,
            depth=scene.depth if self.loader_opts.get("load_depth", True) else None,
            valid=scene.valid if self.loader_opts.get("load_depth", True) else None,
        )

    def load_views(self, num_views: int) -> Scene:
        return render_scene(self.config(num_views))


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
FOLDER_MAX_VIEWS = 200
"""Views a folder job takes when num_views is not given (evenly spaced beyond this many)."""
GENERIC_IMAGE_DIRS = ("images", "image", "imgs", "img", "rgb", "color", "colour", "frames")
"""Folder names that say what the files are, not which scene: the scene takes the parent's name."""
FOLDER_CORRUPT_FIX = "remove or replace that file in the folder"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def folder_scene_id(root: Path) -> str:
    """The scene name of an image folder: `.../my_scene/images` → `my_scene`, else its name."""
    root = root.resolve()
    if root.name.lower() in GENERIC_IMAGE_DIRS and root.parent.name:
        return root.parent.name
    return root.name


@DATASETS.register("folder", "your own images: every .png/.jpg/.jpeg in a folder, no ground truth")
class FolderDataset:
    """The sorted image files of `path`; `load_views(n)` takes n evenly spaced files, and
    `load_views(None)` every file up to `max_views` (default `FOLDER_MAX_VIEWS`)."""

    name = "folder"
    options: ClassVar[dict[str, Any]] = {"path": None, "max_views": FOLDER_MAX_VIEWS}

    def __init__(
        self, path: str | None = None, root: str | None = None, max_views: int = FOLDER_MAX_VIEWS
    ) -> None:
        path = path or root
        if not path:
            raise ConfigError("dataset=folder needs dataset.path=/folder/with/images")
        if isinstance(max_views, bool) or not isinstance(max_views, int) or max_views < 1:
            raise ConfigError(f"dataset.max_views={max_views!r} must be a positive integer")
        self.max_views = max_views
        self.root = Path(path).expanduser()
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist; check dataset.path")
        self.files = sorted(p for p in self.root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise DataError(
                f"no {'/'.join(IMAGE_SUFFIXES)} files in {self.root}; the scene would be empty"
            )
        self.scene_id = folder_scene_id(self.root)

    def sequences(self) -> list[str]:
        return [self.scene_id]

    def load(self, sequence: str | None = None, frame_ids: Sequence[int] | None = None) -> Scene:
        ids = list(range(len(self.files))) if frame_ids is None else list(frame_ids)
        arrays = load_images([self.files[i] for i in ids], fix=FOLDER_CORRUPT_FIX)
        mixed = size_mismatch_message(
            [a.shape[:2] for a in arrays],
            fix=f"resize or crop the images in {self.root} to one size",
        )
        if mixed:
            raise DataError(f"{self.root}: {mixed}")
        images = torch.from_numpy(np.stack(arrays))
        return Scene(
            "folder",
            self.scene_id,
            images,
            frame_ids=[self.files[i].name for i in ids],
            frame_indices=ids,
            image_paths=[str(self.files[i]) for i in ids],
            meta={"root": str(self.root.resolve()), "available_images": len(self.files)},
        )

    def load_views(self, num_views: int | None = None) -> Scene:
        """`num_views` evenly spaced files (first and last included); None: every file, or
        `max_views` evenly spaced ones when the folder holds more. Logs what it took."""
        n = len(self.files)
        if num_views is None:
            num_views = min(n, self.max_views)
        elif num_views > n:
            raise DataError(
                f"{self.root} holds {_plural(n, 'image')}; num_views={num_views} asks for more "
                f"(leave num_views unset to use all {n})"
            )
        ids = np.linspace(0, n - 1, num_views).round().astype(int).tolist()
        scene = self.load(frame_ids=ids)
        h, w = scene.image_hw
        capped = (
            f" (capped at dataset.max_views={self.max_views}; set num_views or dataset.max_views "
            "to take more)"
            if num_views < n and num_views == self.max_views
            else ""
        )
        log.info(
            "folder scene %s: %s of %d, %dx%d (W x H)%s",
            self.scene_id,
            _plural(num_views, "image"),
            n,
            w,
            h,
            capped,
        )
        return scene


def render_scene_id(cfg: SyntheticConfig) -> str:
    return f"seed{cfg.seed}-{cfg.trajectory}"


def get_dataset(name: str, root: str | Path | None = None, **options: Any) -> Any:
    """The loader `name` (see `DATASETS.names()`) reading the dataset prepared under `root`.

    `options` are the loader's own (e.g. `split`, `load_depth`, `variant` for ETH3D); unknown
    options raise ConfigError listing the valid ones. A missing root raises DataError naming the
    folder, the expected layout and the datasets/README.md section.
    """
    if name == "folder":
        path = options.pop("path", None) or (str(root) if root else None)
        return FolderDataset(path=path, **options)
    return DATASETS.build(name, root, **options)
