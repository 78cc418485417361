"""The one output schema every model adapter returns; metrics never see model-native formats.

Conventions (cameras, pixel grid, confidence kinds, points frames): docs/conventions.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

import torch

POINTS_FRAMES = ("first_camera", "arbitrary")
CONF_KINDS = ("exp_plus_one", "sigmoid")


@dataclass
class Predictions:
    """Per-view geometry predicted for a batch of scenes: everything the metrics read.

    Cameras: `extrinsics` are **world-to-camera** `[B, S, 3, 4]` in OpenCV axes (x right, y down,
    z forward), decoded in float64; `intrinsics` `[B, S, 3, 3]` float64 for the network input size,
    or None for models that predict none. Maps keep the official VGGT names and shapes: `depth`
    `[B, S, H, W, 1]` (z in the camera), `depth_conf` `[B, S, H, W]`, `world_points`
    `[B, S, H, W, 3]`, `world_points_conf` `[B, S, H, W]`. `pose_enc` is VGGT's raw 9-number
    encoding.

    What differs between model families is said by fields, set by each model's output adapter, so
    that the metrics never ask which model made the prediction:

    * `points_frame`: the world of `world_points` and of the cameras: `first_camera` (VGGT
      predicts in its first camera's frame) or `arbitrary` (π³ predicts in a world of its own);
    * `conf_kind`: `exp_plus_one` (VGGT's `1 + exp(x)`, at least 1) or `sigmoid` (π³'s
      probability in (0, 1)); protocols choose their default confidence cut by it;
    * `world_points_from_depth`: True when `world_points` are the camera-frame points moved by
      the predicted cameras (π³), so unprojecting `depth` would rebuild the same points; False
      when they come from a head of their own (VGGT's point head);
    * `sources`: which native output fills each field, written into the record as is (e.g.
      `{"family": "pi3", "pose": "inverse(camera_poses)", ...}`); metrics do not read it.

    `raw` keeps other model-native outputs (e.g. π³'s `local_points`) for users and for the
    comparisons with the official models; metrics never read it.
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
    conf_kind: str = "exp_plus_one"
    world_points_from_depth: bool = False
    sources: dict[str, str] = field(default_factory=dict)
    raw: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, valid in (("points_frame", POINTS_FRAMES), ("conf_kind", CONF_KINDS)):
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"Predictions.{name}={getattr(self, name)!r}; valid: {', '.join(valid)}"
                )

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
