"""The loader contract shared by every dataset and the lazy, parallel scene assembly.

A loader knows its dataset's layout and native conventions; it lists sequences, gives each
sequence's native frame list (the index space protocols refer to, invalid frames included) and
describes frames (`FrameInfo`: paths, canonical K and w2c, or the reason the frame is unusable).
`BaseLoader.load` turns selected frames into a `Scene`: images (and depth) are decoded once, in
parallel, straight into preallocated tensors, with a progress bar; frames that turn out unusable
(corrupt file, size mismatch) are dropped with their reason, never silently.

The module stays whole (about 450 lines) because it is one class: `BaseLoader.load` calls the
per-frame hooks every loader overrides (`frame_infos`, `read_image`, `read_depth`, `pose_info`),
so the contract and the assembly that uses it read best side by side.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from avggt_bench.data.cameras import pose_problem
from avggt_bench.data.images import default_workers, load_image
from avggt_bench.data.scene import Scene
from avggt_bench.errors import ConfigError, DataError
from avggt_bench.progress import progress

__all__ = [
    "INVALID_FRAME_POLICIES",
    "BaseLoader",
    "FrameError",
    "FrameInfo",
    "SkippedScene",
]

log = logging.getLogger(__name__)

INVALID_FRAME_POLICIES = ("drop", "fail_scene")
README = "datasets/README.md"


class FrameError(DataError):
    """A frame (or a whole scene) is unusable; `reason` is the short code the record stores."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SkippedScene:
    """A protocol sequence that was not evaluated, with the reason (counted in the record)."""

    scene_id: str
    reason: str
    message: str = ""
    category: str | None = None
    dataset: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "scene_id": self.scene_id,
            "reason": self.reason,
            "message": self.message,
            "category": self.category,
        }


@dataclass
class FrameInfo:
    """One frame as described by the dataset's metadata (nothing decoded yet).

    `K` is the canonical intrinsics for the image as stored, or None with `intrinsics_for`
    computing it from the decoded (H, W) (RealEstate10K and CO3D need the image size).
    `reason` is set when the metadata alone already makes the frame unusable.
    """

    index: int
    frame_id: Any
    image_path: Path | None = None
    w2c: np.ndarray | None = None
    K: np.ndarray | None = None
    intrinsics_for: Callable[[tuple[int, int]], np.ndarray] | None = None
    depth_path: Path | None = None
    timestamp: float | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _NoBar:
    """Stands in for a progress bar when the loader option `progress` is false."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class BaseLoader:
    """Common options, root checks and `load`; subclasses fill in the dataset specifics."""

    name: ClassVar[str] = ""
    section: ClassVar[str] = ""  # datasets/README.md section title
    layout: ClassVar[str] = ""  # the expected tree, shown when the root is missing
    metric: ClassVar[bool] = True
    native_unit: ClassVar[str] = "m"
    has_depth: ClassVar[bool] = False
    options: ClassVar[dict[str, Any]] = {}  # loader-specific options with their defaults
    splits: ClassVar[tuple[str, ...]] = ("test",)

    COMMON: ClassVar[dict[str, Any]] = {
        "split": None,  # None: the first of `splits`
        "load_depth": False,
        "load_points": False,
        "compat": None,
        "workers": None,
        "progress": None,
        "strict_counts": True,
    }

    def __init__(self, root: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        valid = {**self.COMMON, **self.options}
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            hints = [
                f"{u!r} (did you mean {difflib.get_close_matches(u, list(valid), 1)[0]!r}?)"
                if difflib.get_close_matches(u, list(valid), 1)
                else repr(u)
                for u in unknown
            ]
            raise ConfigError(
                f"unknown option(s) for the {self.name} loader: {', '.join(hints)}; valid "
                f"options: {', '.join(sorted(valid))}"
            )
        self.opts: dict[str, Any] = {**valid, **kwargs}
        self.split = self.opts["split"] or self.splits[0]
        if self.split not in self.splits:
            raise ConfigError(
                f"{self.name}: split {self.split!r} is not one of {', '.join(self.splits)}"
            )
        self.compat: dict[str, Any] = dict(self.opts["compat"] or {})
        self.load_depth = bool(self.opts["load_depth"])
        self.load_points = bool(self.opts["load_points"])
        if self.load_depth and not self.has_depth:
            raise ConfigError(
                f"the {self.name} loader provides no ground-truth depth; set load_depth=false"
            )
        if root is None:
            raise ConfigError(
                f"the {self.name} loader needs a root folder (dataset.root=...); "
                f"see {README}, section '{self.section}'"
            )
        self.root = Path(root).expanduser()
        self.check_root()

    # ------------------------------------------------------------------ errors that teach

    def missing(self, path: Path, what: str) -> DataError:
        """A DataError naming the missing path, the expected layout and the README section."""
        return DataError(
            f"{self.name}: {what} not found: {path}\nExpected layout under the dataset root "
            f"{self.root}:\n{self.layout.rstrip()}\nPrepare the data as described in {README}, "
            f"section '{self.section}', and point dataset.root (or paths.data) at it."
        )

    def check_root(self) -> None:
        if not self.root.is_dir():
            raise self.missing(self.root, "dataset root folder")

    # ------------------------------------------------------------------ per-dataset hooks

    def sequences(self) -> list[str]:
        """Ids of the sequences of the configured split, in the dataset's canonical order."""
        raise NotImplementedError

    def expand(self, keys: Sequence[str]) -> list[tuple[str | None, list[str]]]:
        """Protocol scene keys → groups of sequence ids: (group, ids). Default: one each."""
        return [(None, [str(k)]) for k in keys]

    def has_sequence(self, sequence: str) -> bool:
        return sequence in set(self.sequences())

    def native_frame_ids(self, sequence: str) -> list[Any]:
        """The full ordered native frame list that protocol indices refer to."""
        raise NotImplementedError

    def num_frames(self, sequence: str) -> int:
        return len(self.native_frame_ids(sequence))

    def frame_infos(self, sequence: str, indices: Sequence[int]) -> list[FrameInfo]:
        raise NotImplementedError

    def frame_validity(self, sequence: str) -> list[bool]:
        """Per native frame: usable according to the metadata (used by `even_first`)."""
        infos = self.frame_infos(sequence, range(self.num_frames(sequence)))
        return [
            info.reason is None and (info.image_path is None or info.image_path.is_file())
            for info in infos
        ]

    def exclusion(self, sequence: str) -> str | None:
        """A protocol-level reason to exclude the whole sequence before sampling, or None."""
        return None

    def category(self, sequence: str) -> str | None:
        return None

    def read_image(self, info: FrameInfo) -> np.ndarray:
        assert info.image_path is not None
        return load_image(info.image_path)

    def image_hw(self, info: FrameInfo) -> tuple[int, int]:
        """(H, W) of the stored image, from the file header (no decoding)."""
        assert info.image_path is not None
        try:
            with Image.open(info.image_path) as img:
                return img.size[1], img.size[0]
        except FileNotFoundError:
            raise FrameError(f"image file not found: {info.image_path}", "missing_file") from None
        except Exception as exc:
            raise FrameError(
                f"cannot read image {info.image_path}: {exc}", "corrupt_image"
            ) from exc

    def read_depth(self, info: FrameInfo, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(depth float32 [H, W] in canonical units, 0 = invalid; valid bool [H, W])."""
        raise NotImplementedError

    def reference_points(self, sequence: str) -> np.ndarray | None:
        return None

    def scene_meta(self, sequence: str) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ helpers for subclasses

    def pose_info(self, info: FrameInfo) -> FrameInfo:
        """Set `info.reason` from its w2c (nan_pose / inf_pose / bad_rotation) if not set yet."""
        if info.reason is None and info.w2c is not None:
            info.reason = pose_problem(info.w2c)
        return info

    # ------------------------------------------------------------------ assembly

    def load(
        self,
        sequence: str,
        frame_ids: Sequence[int] | None = None,
        *,
        invalid_frames: str = "drop",
    ) -> Scene:
        """The Scene of `sequence` at positions `frame_ids` of its native frame list (all frames
        when None), in that order.

        Unusable frames are dropped and listed in `Scene.dropped` with their reason
        (`invalid_frames="drop"`), or raise `FrameError` (`"fail_scene"`). Raises FrameError
        (reason `no_valid_frames`) when nothing is left.
        """
        if invalid_frames not in INVALID_FRAME_POLICIES:
            raise ConfigError(
                f"invalid_frames={invalid_frames!r}; valid: {', '.join(INVALID_FRAME_POLICIES)}"
            )
        n = self.num_frames(sequence)
        indices = list(range(n)) if frame_ids is None else [int(i) for i in frame_ids]
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise DataError(
                f"{self.name}/{sequence}: frame indices {bad[:8]} are out of range for its {n} "
                "frames; check the frame list or num_views"
            )
        dropped: list[tuple[Any, str]] = []

        def reject(info: FrameInfo, reason: str, message: str = "") -> None:
            if invalid_frames == "fail_scene":
                raise FrameError(
                    f"{self.name}/{sequence}: frame {info.frame_id} is unusable ({reason})"
                    + (f": {message}" if message else "")
                    + "; the preset's invalid_frames=fail_scene skips the scene",
                    reason,
                )
            dropped.append((info.frame_id, reason))

        live: list[FrameInfo] = []
        for info in self.frame_infos(sequence, indices):
            if info.reason is not None:
                reject(info, info.reason)
            elif info.image_path is not None and not info.image_path.is_file():
                reject(info, "missing_file", str(info.image_path))
            else:
                live.append(info)

        hw = None
        while live and hw is None:
            try:
                hw = self.image_hw(live[0])
            except FrameError as exc:
                reject(live.pop(0), exc.reason, str(exc))
        if hw is None:
            raise FrameError(
                f"{self.name}/{sequence}: none of the {len(indices)} selected frames is usable "
                f"(dropped: {dropped[:8]})",
                "no_valid_frames",
            )

        s = len(live)
        images = torch.empty((s, hw[0], hw[1], 3), dtype=torch.uint8)
        depth = torch.zeros((s, *hw), dtype=torch.float32) if self.load_depth else None
        valid = torch.zeros((s, *hw), dtype=torch.bool) if self.load_depth else None

        # progress=False: never; otherwise avggt_bench.progress decides (TTY, AVGGT_PROGRESS=1
        # forces it on, AVGGT_QUIET=1 / CI off)
        bar = (
            _NoBar()
            if self.opts["progress"] is False
            else progress(
                total=s, desc=f"loading {self.name}/{sequence}", unit="frame", leave=False
            )
        )

        def work(j: int) -> tuple[str, str] | None:
            info = live[j]
            try:
                img = self.read_image(info)
            except FrameError as exc:
                return exc.reason, str(exc)
            except DataError as exc:
                return "corrupt_image", str(exc)
            if img.shape[:2] != hw:
                return (
                    "size_mismatch",
                    f"image is {img.shape[1]}x{img.shape[0]}, not {hw[1]}x{hw[0]}",
                )
            images[j].numpy()[...] = img  # straight into the preallocated buffer
            if depth is not None and valid is not None:
                try:
                    d, v = self.read_depth(info, hw)
                except FrameError as exc:
                    return exc.reason, str(exc)
                except DataError as exc:
                    return "corrupt_depth", str(exc)
                if d.shape != hw:
                    return (
                        "size_mismatch",
                        f"depth is {d.shape[1]}x{d.shape[0]}, not {hw[1]}x{hw[0]}",
                    )
                depth[j].numpy()[...] = d
                valid[j].numpy()[...] = v
            bar.update(1)
            return None

        workers = self.opts["workers"] or default_workers(s)
        try:
            if workers <= 1 or s <= 1:
                problems = [work(j) for j in range(s)]
            else:
                with ThreadPoolExecutor(workers, thread_name_prefix="avggt-load") as pool:
                    problems = list(pool.map(work, range(s)))
        finally:
            bar.close()

        keep = []
        for j, problem in enumerate(problems):
            if problem is None:
                keep.append(j)
            else:
                reject(live[j], *problem)
        if not keep:
            raise FrameError(
                f"{self.name}/{sequence}: none of the {len(indices)} selected frames is usable "
                f"(dropped: {dropped[:8]})",
                "no_valid_frames",
            )
        if len(keep) < s:  # compact in place (keep is ascending, so sources are never overwritten)
            for dst, src in enumerate(keep):
                if dst != src:
                    images[dst] = images[src]
                    if depth is not None and valid is not None:
                        depth[dst] = depth[src]
                        valid[dst] = valid[src]
            images = images[: len(keep)]
            depth = None if depth is None else depth[: len(keep)]
            valid = None if valid is None else valid[: len(keep)]
        if dropped:
            log.warning(
                "%s/%s: dropped %d of %d selected frames: %s",
                self.name,
                sequence,
                len(dropped),
                len(indices),
                ", ".join(f"{fid} ({why})" for fid, why in dropped[:10])
                + (" ..." if len(dropped) > 10 else ""),
            )
        kept = [live[j] for j in keep]
        return self._scene(sequence, kept, hw, images, depth, valid, dropped)

    def _scene(
        self,
        sequence: str,
        kept: list[FrameInfo],
        hw: tuple[int, int],
        images: torch.Tensor,
        depth: torch.Tensor | None,
        valid: torch.Tensor | None,
        dropped: list[tuple[Any, str]],
    ) -> Scene:
        ks = []
        for info in kept:
            k = (
                info.K
                if info.K is not None
                else (info.intrinsics_for(hw) if info.intrinsics_for else None)
            )
            ks.append(k)
        has_k = all(k is not None for k in ks)
        has_pose = all(info.w2c is not None for info in kept)
        intrinsics = torch.from_numpy(np.stack(ks).astype(np.float64)) if has_k else None
        extrinsics = (
            torch.from_numpy(np.stack([np.asarray(i.w2c, np.float64)[:3, :4] for i in kept]))
            if has_pose
            else None
        )
        points = None
        if self.load_points:
            pts = self.reference_points(sequence)
            points = None if pts is None else torch.from_numpy(np.asarray(pts, dtype=np.float64))
        times = [i.timestamp for i in kept]
        meta = {"root": str(self.root.resolve()), "split": self.split, **self.scene_meta(sequence)}
        return Scene(
            dataset=self.name,
            scene_id=sequence,
            images=images,
            intrinsics=intrinsics,
            extrinsics=extrinsics,
            depth=depth,
            valid=valid,
            points=points,
            frame_ids=[i.frame_id for i in kept],
            metric=self.metric,
            native_unit=self.native_unit,
            dropped=dropped,
            meta=meta,
            category=self.category(sequence),
            frame_indices=[i.index for i in kept],
            timestamps=times if all(t is not None for t in times) else None,
            image_paths=[str(i.image_path) if i.image_path else "" for i in kept],
        )
