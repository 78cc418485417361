"""`predictions.save=true`: each scene's predictions into the record's folder, within a budget.

The size of each file is logged and kept in the scene's row; once the job's files reach
`predictions.budget_mb`, later scenes are not saved and their rows say so (a re-score then
covers the saved scenes only, and says which are missing).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from avggt_bench.models.predictions import Predictions
from avggt_bench.records import Record, writes_files
from avggt_bench.records.saved_predictions import (
    images_uint8,
    map_dtype,
    save_scene,
    scene_file,
)

log = logging.getLogger("avggt_bench.job")
MB = 1e6


class PredictionSaver:
    """Saves the scenes of one job (a no-op unless `predictions.save` is true)."""

    def __init__(self, cfg: DictConfig, record: Record) -> None:
        opts = cfg.get("predictions") or {}
        # a frame-parallel job (torchrun, parallel=frames): rank 0 alone writes the files
        self.enabled = bool(opts.get("save", False)) and writes_files()
        self.dtype = map_dtype(str(opts.get("dtype", "float16")))
        self.with_images = bool(opts.get("images", True))
        budget = opts.get("budget_mb")
        self.budget_bytes = None if budget is None else float(budget) * MB
        self.used = 0
        self.record = record
        self.record_path = Path(cfg.record.dir) / f"{record.run_id}.json"

    def save(
        self,
        scene_id: str,
        dataset: str,
        frame_ids: list[Any],
        pred: Predictions,
        images: torch.Tensor | None,
    ) -> dict[str, Any] | None:
        """Write the scene's file; returns what its record row keeps (None when disabled)."""
        if not self.enabled:
            return None
        if self.budget_bytes is not None and self.used >= self.budget_bytes:
            log.warning(
                "%s: predictions not saved: the job's files reached predictions.budget_mb=%.0f",
                scene_id,
                self.budget_bytes / MB,
            )
            return {"saved": False, "reason": f"budget: {self.used / MB:.1f} MB already saved"}
        path = scene_file(self.record_path, scene_id)
        job = self.record.job
        meta = {
            "run_id": self.record.run_id,
            "record": self.record_path.name,
            "config_hash": self.record.config_hash,
            "scene_id": scene_id,
            "dataset": dataset,
            "frame_ids": [_plain(f) for f in frame_ids],
            "model": job.get("model"),
            "attention": job.get("attention"),
            "family": self.record.model.get("family"),
            "is_dense": self.record.model.get("is_dense"),
        }
        pixels = images_uint8(images) if (images is not None and self.with_images) else None
        size = save_scene(path, pred, meta, pixels, self.dtype)
        self.used += size
        log.info(
            "%s: predictions saved to %s (%.1f MB, %s maps)", scene_id, path, size / MB, self.dtype
        )
        return {
            "saved": True,
            "file": f"{path.parent.name}/{path.name}",
            "bytes": size,
            "map_dtype": self.dtype,
        }


def _plain(value: Any) -> Any:
    """Frame ids as JSON values (numpy integers become int)."""
    return value.item() if isinstance(value, np.generic) else value
