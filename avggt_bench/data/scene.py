"""`Scene`: the views of one sequence with their ground truth, in the canonical convention.

Cameras follow OpenCV axes; extrinsics are world-to-camera `[S, 3, 4]` float64; intrinsics
`[S, 3, 3]` float64 are valid for the stored image size; depth is z-depth in metres (or the
dataset's native unit, `native_unit`) with 0 meaning invalid (docs/conventions.md; each dataset:
datasets/README.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from avggt_bench.data.cameras import rotation_deviation
from avggt_bench.errors import DataError


@dataclass
class Scene:
    """Views of one scene. `images` is uint8 `[S, H, W, 3]` RGB, exactly as decoded from disk.

    `points` are reference points (e.g. a mesh's vertices) in canonical world units.
    `frame_ids` are native ids (file index, timestamp string, CO3D frame); `frame_indices` are
    the positions in the sequence's native frame list that protocols refer to; `dropped` lists
    the frames removed by the loader or the protocol with their reason.
    """

    dataset: str
    scene_id: str
    images: torch.Tensor
    intrinsics: torch.Tensor | None = None
    extrinsics: torch.Tensor | None = None
    depth: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    points: torch.Tensor | None = None
    frame_ids: list[Any] = field(default_factory=list)
    metric: bool = True
    native_unit: str = "m"
    dropped: list[tuple[Any, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    category: str | None = None
    frame_indices: list[int] | None = None
    timestamps: list[float] | None = None
    image_paths: list[str] | None = None

    def __post_init__(self) -> None:
        if not self.frame_ids:
            self.frame_ids = list(range(self.num_views))
        self.validate()

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def max_rotation_deviation(self) -> float | None:
        """Worst max(|RᵀR − I|, |RRᵀ − I|) of the ground-truth rotations (None without poses).

        Loaders accept slightly non-orthonormal stored rotations (`data/cameras.py`
        `ROTATION_TOL`); this says how far from a rotation the accepted ones were.
        """
        if self.extrinsics is None:
            return None
        return rotation_deviation(self.extrinsics[:, :, :3].numpy())

    def record_fields(self) -> dict[str, Any]:
        """Per-scene facts for the record's scene row (the job adds them to each row)."""
        return {"max_rotation_deviation": self.max_rotation_deviation}

    def validate(self) -> None:
        """Raise DataError naming the first inconsistency."""
        where = f"scene {self.dataset}/{self.scene_id}"
        if self.images.dim() != 4 or self.images.shape[-1] != 3 or self.images.dtype != torch.uint8:
            raise DataError(
                f"{where}: images must be uint8 [S, H, W, 3], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        s = self.num_views
        if s == 0:
            raise DataError(f"{where} is empty (no views); check the frame selection")
        h, w = self.image_hw
        expect = {
            "intrinsics": (s, 3, 3),
            "extrinsics": (s, 3, 4),
            "depth": (s, h, w),
            "valid": (s, h, w),
        }
        for name, shape in expect.items():
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise DataError(f"{where}: {name} has shape {tuple(value.shape)}, expected {shape}")
        for name in ("intrinsics", "extrinsics", "points"):
            value = getattr(self, name)
            if value is not None and value.dtype != torch.float64:
                raise DataError(f"{where}: {name} must be float64 (geometry), got {value.dtype}")
        if len(self.frame_ids) != s:
            raise DataError(f"{where}: {len(self.frame_ids)} frame ids for {s} views")
        for name in ("frame_indices", "timestamps", "image_paths"):
            value = getattr(self, name)
            if value is not None and len(value) != s:
                raise DataError(f"{where}: {len(value)} {name} for {s} views")

    def subset(self, indices: Sequence[int]) -> Scene:
        """The views at `indices`, in that order (reference points are shared)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx]

        def pick_list(values: list[Any] | None) -> list[Any] | None:
            return None if values is None else [values[i] for i in idx.tolist()]

        return replace(
            self,
            images=self.images[idx],
            intrinsics=pick(self.intrinsics),
            extrinsics=pick(self.extrinsics),
            depth=pick(self.depth),
            valid=pick(self.valid),
            frame_ids=[self.frame_ids[i] for i in idx.tolist()],
            frame_indices=pick_list(self.frame_indices),
            timestamps=pick_list(self.timestamps),
            image_paths=pick_list(self.image_paths),
            dropped=list(self.dropped),
            meta=dict(self.meta),
        )

    def camera_to_world(self) -> torch.Tensor:
        """Camera-to-world `[S, 3, 4]` by the closed-form rigid inverse."""
        if self.extrinsics is None:
            raise DataError(f"scene {self.dataset}/{self.scene_id} has no ground-truth poses")
        rot, t = self.extrinsics[:, :, :3], self.extrinsics[:, :, 3:]
        rot_t = rot.transpose(1, 2)
        return torch.cat((rot_t, -rot_t @ t), dim=2)
