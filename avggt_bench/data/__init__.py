"""Scenes (views with ground truth), the dataset loaders and the protocol presets.

from avggt_bench.data import get_dataset, load_protocol_preset, protocol_scenes
loader = get_dataset("7scenes", "/data/7scenes")
scene = loader.load("chess/seq-03", [0, 40, 80])
for item in protocol_scenes(load_protocol_preset("seven_scenes_pi3_dense")):
    ...  # a Scene, or a SkippedScene(scene_id, reason)
"""

from avggt_bench.data.base import FrameError, SkippedScene
from avggt_bench.data.datasets import DATASETS, get_dataset
from avggt_bench.data.presets import Preset, load_protocol_preset, preset_names
from avggt_bench.data.protocol_scenes import (
    ProtocolDataset,
    build_dataset,
    plan_protocol,
    protocol_scenes,
    summarize,
)
from avggt_bench.data.scene import Scene

__all__ = [
    "DATASETS",
    "FrameError",
    "Preset",
    "ProtocolDataset",
    "Scene",
    "SkippedScene",
    "build_dataset",
    "get_dataset",
    "load_protocol_preset",
    "plan_protocol",
    "preset_names",
    "protocol_scenes",
    "summarize",
]
