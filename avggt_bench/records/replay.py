"""What a saved job needs besides its predictions, rebuilt without a model: the preset's ground
truth in the job's scene order (`RecordScenes`), the check that the frames are still those of the
run, and the dense job of the same configuration (`dense_parent`) for fidelity.

Used by `python -m avggt_bench.rescore` and by the report's page, which shows predictions beside
the ground truth.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from avggt_bench.errors import DataError
from avggt_bench.records.saved_predictions import SavedScene

# config keys that do not change a prediction: a dense job differing only in these is the parent
NOT_PREDICTION = ("attention", "record", "resume", "logger", "paths", "hydra", "predictions")
NOT_PREDICTION += ("timing", "fidelity", "debug")


class RecordScenes:
    """The ground truth of a protocol record, rebuilt from its resolved config: the preset, its
    scenes in the job's order, the metric protocols and the input transforms."""

    def __init__(self, record: dict[str, Any]) -> None:
        from avggt_bench.data.protocol_scenes import ProtocolDataset, build_dataset
        from avggt_bench.job.protocol import _fidelity_spec
        from avggt_bench.metrics.evaluation_protocol import Protocol
        from avggt_bench.models.preprocess_geometry import PreprocessConfig

        self.record = record
        self.cfg = OmegaConf.create(record["config"])
        dataset = build_dataset(self.cfg.dataset)
        if not isinstance(dataset, ProtocolDataset):
            raise DataError(
                f"{record['run_id']}: dataset {self.cfg.dataset.get('name')!r} is not a protocol "
                "preset; only protocol jobs have metrics to re-score"
            )
        self.dataset = dataset
        spec = dataset.preset.as_dict()
        self.protocol = Protocol.from_preset(spec)
        self.fidelity_protocol = Protocol.from_preset(_fidelity_spec(spec))
        self.oracle = record.get("model", {}).get("preset") == "ground_truth"
        pre = record.get("input", {}).get("preprocess")
        self.pre_cfg = None if (self.oracle or pre is None) else PreprocessConfig(**pre)
        self.views = self.cfg.get("num_views")

    def items(self) -> Iterator[Any]:
        """The preset's scenes in the job's order (Scene, SkippedScene or a failed SceneResult)."""
        from avggt_bench.job.protocol import _scenes

        return _scenes(self.dataset, self.views)

    def scenes(self, wanted: list[str]) -> dict[str, Any]:
        """Scene id -> ground-truth `Scene` of the `wanted` scenes the preset loads now (one pass
        over the preset, stopping once all are found; a skipped scene is left out)."""
        found: dict[str, Any] = {}
        for item in self.items():
            sid = str(getattr(item, "scene_id", ""))
            if sid in wanted and hasattr(item, "images"):
                found[sid] = item
            if len(found) == len(wanted):
                break
        return found

    def transforms(self, scene: Any) -> Any:
        """The input transforms of the run (None for the ground-truth oracle)."""
        from avggt_bench.models.preprocess import preprocess

        if self.pre_cfg is None:
            return None
        return preprocess(scene.images, self.pre_cfg, progress=False).transforms


def check_frames(saved: SavedScene, scene: Any) -> None:
    """The saved frame list must be the one the ground truth loads now."""
    now = [str(f) for f in scene.frame_ids]
    then = [str(f) for f in saved.meta.get("frame_ids", [])]
    if now != then:
        raise DataError(
            f"{saved.path}: saved for {len(then)} frames, the dataset now gives {len(now)} "
            f"(first difference at {_first_difference(then, now)}); the data or the preset "
            "changed since the run: rerun the job"
        )


def _first_difference(a: list[str], b: list[str]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def dense_parent(
    path: Path, record: dict[str, Any], records: dict[Path, dict[str, Any]]
) -> Path | None:
    """The dense job of the same configuration in the same folder, for an accelerated record."""
    if record.get("model", {}).get("is_dense", True):
        return None
    want = _prediction_config(record)
    for other_path, other in records.items():
        if other_path == path or not other.get("model", {}).get("is_dense", False):
            continue
        if other.get("status") not in ("ok", "partial"):
            continue
        same_weights = other.get("model", {}).get("weights") == record.get("model", {}).get(
            "weights"
        )
        if same_weights and _prediction_config(other) == want:
            return other_path
    return None


def _prediction_config(record: dict[str, Any]) -> str:
    config = {k: v for k, v in record.get("config", {}).items() if k not in NOT_PREDICTION}
    machine = record.get("job", {}).get("machine")
    return json.dumps([config, machine], sort_keys=True, default=str)
