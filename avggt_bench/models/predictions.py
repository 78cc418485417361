"""The one output schema every model adapter returns; metrics never see model-native formats."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

import torch


@dataclass
class Predictions:
    """Per-view geometry predicted for a batch of scenes.

    Cameras: `extrinsics` are **world-to-camera** `[B, S, 3, 4]` in OpenCV axes (x right, y down,
    z forward), decoded in float64; `intrinsics` `[B, S, 3, 3]` float64 for the network input size,
    or None for models that predict none. Maps keep the official VGGT names and shapes: `depth`
    `[B, S, H, W, 1]`, `depth_conf` `[B, S, H, W]`, `world_points` `[B, S, H, W, 3]`,
    `world_points_conf` `[B, S, H, W]`. `pose_enc` is VGGT's raw 9-number encoding. `raw` keeps any
    other model-native output (e.g. π³'s `local_points`). `points_frame` says which world the points
    live in: `first_camera` (VGGT) or `arbitrary` (π³).
    """

    extrinsics_convention: ClassVar[str] = "world_to_camera_opencv"

    extrinsics: torch.Tensor
    intrinsics: torch.Tensor | None
    depth: torch.Tensor | None
    depth_conf: torch.Tensor | None
    world_points: torch.Tensor | None
    world_points_conf: torch.Tensor | None
    image_hw: tuple[int, int]
    pose_enc: torch.Tensor | None = None
    pose_enc_list: list[torch.Tensor] | None = None
    points_frame: str = "first_camera"
    raw: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, key: str) -> torch.Tensor:
        """Dict-style access like the official output dictionary (`pred["depth"]`)."""
        if key in self.raw:
            return self.raw[key]
        if key in {f.name for f in fields(self)}:
            return getattr(self, key)
        raise KeyError(key)

    def camera_to_world(self) -> torch.Tensor:
        """Camera-to-world `[B, S, 3, 4]` by the closed-form rigid inverse `[R^T | -R^T t]`."""
        rot, t = self.extrinsics[..., :3, :3], self.extrinsics[..., :3, 3:]
        rot_t = rot.transpose(-1, -2)
        return torch.cat((rot_t, -rot_t @ t), dim=-1)

    def map(self, fn) -> Predictions:
        """Apply `fn` to every tensor (e.g. `.cpu()`), keeping the structure."""

        def apply(value):
            if isinstance(value, torch.Tensor):
                return fn(value)
            if isinstance(value, list):
                return [apply(v) for v in value]
            if isinstance(value, dict):
                return {k: apply(v) for k, v in value.items()}
            return value

        return Predictions(**{f.name: apply(getattr(self, f.name)) for f in fields(self)})

    def cpu(self) -> Predictions:
        return self.map(lambda t: t.cpu())
