"""Per-scene results of the protocol metrics: one `GroupResult` per metric group (pose, trajectory,
points, scannet_cd, depth) with its status, alignment parameters and timing, gathered in a
`SceneResult` per scene (`metrics/evaluate.py` fills them, `metrics/aggregate.py` combines them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from avggt_bench.metrics.geometry import OK, SKIPPED


@dataclass
class GroupResult:
    """One metric group of one scene."""

    status: str = OK
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # alignment parameters and counts
    seconds: float = 0.0
    weight: float | None = None  # valid-pixel count (pixel_weighted)
    pairs: tuple[np.ndarray, np.ndarray] | None = None  # relpose (rot, trans) errors, in memory

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "message": self.message,
            "metrics": dict(self.metrics),
            "params": self.params,
            "seconds": self.seconds,
            "weight": self.weight,
        }


@dataclass
class SceneResult:
    """Per-scene metric values, alignment parameters, status and message."""

    scene_id: str
    dataset: str
    task: str | None
    category: str | None = None
    status: str = OK
    message: str = ""
    unit: str = "m"
    groups: dict[str, GroupResult] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    frame_ids: list[Any] = field(default_factory=list)
    dropped: list[tuple[Any, str]] = field(default_factory=list)  # the loader's (frame, reason)

    @property
    def metrics(self) -> dict[str, float]:
        """All groups' metrics in one flat dict (names are unique across groups)."""
        return {k: v for g in self.groups.values() for k, v in g.metrics.items()}

    @property
    def timings(self) -> dict[str, float]:
        return {name: g.seconds for name, g in self.groups.items()}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (per-pair errors stay in memory only)."""
        return {
            "scene_id": self.scene_id,
            "dataset": self.dataset,
            "task": self.task,
            "category": self.category,
            "status": self.status,
            "message": self.message,
            "unit": self.unit,
            "metrics": self.metrics,
            "timings_s": self.timings,
            "groups": {k: g.as_dict() for k, g in self.groups.items()},
            "outputs": self.outputs,
            "frame_ids": [str(f) for f in self.frame_ids],
            "dropped": [_dropped_entry(d) for d in self.dropped],
        }

    @classmethod
    def skipped(
        cls, scene_id: str, dataset: str, reason: str, category: str | None = None
    ) -> SceneResult:
        """A scene the loader or protocol skipped, so that `aggregate` can count it."""
        return cls(scene_id, dataset, None, category, SKIPPED, reason)

    @classmethod
    def from_skipped(cls, item: Any) -> SceneResult:
        """From the loader's `SkippedScene` (scene_id, reason, message, category, dataset)."""
        message = f"{item.reason}: {item.message}" if getattr(item, "message", "") else item.reason
        return cls.skipped(item.scene_id, getattr(item, "dataset", ""), message, item.category)


def _dropped_entry(item: Any) -> dict[str, str]:
    if isinstance(item, tuple | list) and len(item) == 2:
        return {"frame": str(item[0]), "reason": str(item[1])}
    return {"frame": "", "reason": str(item)}


__all__ = ["GroupResult", "SceneResult"]
