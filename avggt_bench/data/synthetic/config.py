"""What the synthetic dataset renders: `SyntheticConfig` and its validation."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from avggt_bench.data.synthetic.layout import MAX_OBJECTS, TRAJECTORIES
from avggt_bench.errors import ConfigError


@dataclass(frozen=True)
class SyntheticConfig:
    """What to render: view count, image size (W x H), seed, camera path, horizontal FoV."""

    num_views: int = 16
    width: int = 518
    height: int = 392
    seed: int = 0
    trajectory: str = "orbit"
    fov_deg: float = 60.0
    num_objects: int = 8

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid field and the valid range."""
        for name in ("num_views", "width", "height", "seed", "num_objects"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ConfigError(f"synthetic.{name} must be an integer, got {value!r}")
        if self.num_views < 1:
            raise ConfigError(f"synthetic.num_views must be >= 1, got {self.num_views}")
        if self.seed < 0:
            raise ConfigError(f"synthetic.seed must be >= 0, got {self.seed}")
        if self.width < 1 or self.height < 1:
            raise ConfigError(
                f"synthetic image size must be positive, got width={self.width} "
                f"height={self.height}"
            )
        if not 0 <= self.num_objects <= MAX_OBJECTS:
            raise ConfigError(
                f"synthetic.num_objects must be in [0, {MAX_OBJECTS}], got {self.num_objects}"
            )
        if self.trajectory not in TRAJECTORIES:
            raise ConfigError(
                f"unknown synthetic.trajectory {self.trajectory!r}; valid choices: "
                f"{', '.join(TRAJECTORIES)}"
            )
        try:
            fov = float(self.fov_deg)
        except (TypeError, ValueError):
            fov = math.nan
        if not (math.isfinite(fov) and 0.0 < fov < 180.0):
            raise ConfigError(f"synthetic.fov_deg must be in (0, 180), got {self.fov_deg}")
