"""Protocol iteration: a preset's scenes with its frame selection, or the reason they are skipped.

`plan_protocol` decides, without decoding any image, which sequences a preset evaluates and
which frame positions each gets (exclusions, availability, sampling with the run's generator,
frame order, `min_frames`). `protocol_scenes` then loads the planned scenes one at a time (lazy:
one scene in memory at a time) and yields a `Scene` or a `SkippedScene(scene_id, reason)`, so a
job can count and record every skip; nothing is dropped silently.

Order matters: sequences are visited in the preset's order (CO3D: categories in list order,
sequences sorted by name), and `random_choice_legacy` draws only for sequences that are
available, not excluded and long enough, as upstream did.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from avggt_bench.data.base import FrameError, SkippedScene
from avggt_bench.data.datasets import DATASETS
from avggt_bench.data.presets import LISTS_DIR, Preset
from avggt_bench.data.sampling import Sampler, fast_eval_subset, load_frame_list
from avggt_bench.data.scene import Scene
from avggt_bench.errors import ConfigError, DataError

__all__ = [
    "PlannedScene",
    "ProtocolDataset",
    "build_dataset",
    "plan_protocol",
    "protocol_scenes",
    "read_scene_list",
    "summarize",
]


UNREADABLE = (OSError, ValueError)
"""Errors a missing or malformed file raises inside a loader (I/O, a decoder's ValueError,
DataError): the scene is skipped with reason `load_error` and the message, never the whole run.
KeyError, IndexError and TypeError are not here: they are bugs of our own code, which the job
records as an `error` with its traceback instead of counting a data skip."""


@dataclass
class PlannedScene:
    """A sequence the protocol evaluates, with its frame positions in feeding order."""

    scene_id: str
    indices: list[int]
    category: str | None = None
    notes: list[str] = field(default_factory=list)


def read_scene_list(name: str) -> list[str]:
    """A scene list file (one id per line, `#` comments) under datasets/lists/ or absolute."""
    from pathlib import Path

    path = Path(name).expanduser()
    path = path if path.is_absolute() else LISTS_DIR / path
    if not path.is_file():
        raise DataError(
            f"scene list {path} not found; lists ship in datasets/lists/ (see "
            "datasets/README.md, section 'Scene and frame lists')"
        )
    if path.suffix == ".json":
        return list(load_frame_list(path))
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _scene_keys(preset: Preset, loader: Any, sampler: Sampler) -> list[str]:
    scenes = preset.scenes
    if isinstance(scenes, tuple):
        return list(scenes)
    if scenes == "frame_list":
        if sampler.frame_list is None:
            raise ConfigError(
                f"dataset preset {preset.name!r}: scenes=frame_list needs sampling.strategy="
                "frame_list"
            )
        return list(sampler.frame_list)
    if scenes.endswith((".txt", ".json")):
        return read_scene_list(scenes)
    return list(loader.sequences())


def plan_protocol(
    preset: Preset, loader: Any = None, num_views: int | None = None
) -> tuple[list[PlannedScene | SkippedScene], Any, Sampler]:
    """(plan, loader, sampler): per sequence a `PlannedScene` or a `SkippedScene`.

    `num_views` overrides the preset's frame count (`Sampler.with_count`); for procedural
    datasets (synthetic) with strategy `all` it sets the number of rendered views instead.
    """
    loader = preset.build_loader() if loader is None else loader
    # procedural scenes (synthetic) that take every frame are re-rendered with num_views views;
    # any other strategy samples from the preset's frames like a real dataset
    rerender = (
        bool(getattr(loader, "procedural", False))
        and num_views is not None
        and preset.sampling.strategy == "all"
    )
    if rerender:
        loader = loader.with_frames(num_views)
    sampler = preset.sampler(None if rerender else num_views)
    sampler.strict = bool(getattr(loader, "opts", {}).get("strict_counts", True))
    keys = _scene_keys(preset, loader, sampler)
    groups = loader.expand(keys)
    cfg = preset.sampling
    if cfg.fast_eval:
        picker = random.Random(cfg.fast_eval_seed)  # one Python generator for the whole run
        groups = [(g, fast_eval_subset(seqs, picker, cfg.fast_eval_count)) for g, seqs in groups]
    plan: list[PlannedScene | SkippedScene] = []
    requested = sampler.cfg.n if sampler.cfg.n is not None else sampler.overridden
    for group, seqs in groups:
        if not seqs:
            plan.append(SkippedScene(str(group), "missing_sequence", "nothing on disk", group))
        for seq in seqs:
            if preset.max_scenes is not None and len(plan) >= preset.max_scenes:
                break
            plan.append(_plan_one(preset, loader, sampler, seq, group, requested))
    return plan, loader, sampler


def _plan_one(
    preset: Preset, loader: Any, sampler: Sampler, seq: str, group: str | None, requested: Any
) -> PlannedScene | SkippedScene:
    def skip(reason: str, message: str = "") -> SkippedScene:
        return SkippedScene(seq, reason, message, group, preset.dataset)

    try:
        if not loader.has_sequence(seq):
            return skip("missing_sequence", f"{seq} is not on disk under {loader.root}")
        category = loader.category(seq) or group
        excluded = loader.exclusion(seq)
        if excluded:
            return skip(excluded, "excluded by the protocol before sampling")
        n = loader.num_frames(seq)
        valid = loader.frame_validity(seq) if sampler.needs_validity else None
        indices = sampler.select(seq, n, valid)
    except FrameError as exc:
        return skip(exc.reason, str(exc))
    except DataError as exc:
        return skip("load_error", str(exc))
    except UNREADABLE as exc:  # a malformed metadata file must not end the whole run
        return skip("load_error", f"{type(exc).__name__}: {exc}")
    if preset.frame_order == "ascending":
        indices = sorted(indices)
    notes = []
    if seq in sampler.warnings:
        notes.append(f"frame_count_mismatch: {sampler.warnings[seq]}")
    if isinstance(requested, int) and len(indices) < requested:
        notes.append(f"frames_short: {len(indices)} of {requested} frames")
    if len(indices) < preset.min_frames:
        return skip(
            "too_few_frames",
            f"{len(indices)} frames selected, the preset needs {preset.min_frames}",
        )
    return PlannedScene(seq, indices, category, notes)


def protocol_scenes(
    preset: Preset, num_views: int | None = None, loader: Any = None
) -> Iterator[Scene | SkippedScene]:
    """Yield, per protocol sequence, its `Scene` (selection applied) or a `SkippedScene`.

    Frames found unusable while loading are handled by `preset.invalid_frames` (drop: listed in
    `Scene.dropped`; fail_scene: the scene is skipped); a scene left with fewer than
    `min_frames` usable frames is skipped with reason `too_few_frames`.
    """
    plan, loader, sampler = plan_protocol(preset, loader, num_views)
    protocol = {"preset": preset.name, "sampling": sampler.describe()}
    for item in plan:
        if isinstance(item, SkippedScene):
            yield item
            continue
        try:
            scene = loader.load(item.scene_id, item.indices, invalid_frames=preset.invalid_frames)
        except FrameError as exc:
            yield SkippedScene(item.scene_id, exc.reason, str(exc), item.category, preset.dataset)
            continue
        except DataError as exc:
            yield SkippedScene(item.scene_id, "load_error", str(exc), item.category, preset.dataset)
            continue
        except UNREADABLE as exc:
            message = f"{type(exc).__name__}: {exc}"
            yield SkippedScene(item.scene_id, "load_error", message, item.category, preset.dataset)
            continue
        if scene.num_views < preset.min_frames:
            yield SkippedScene(
                item.scene_id,
                "too_few_frames",
                f"{scene.num_views} usable frames after dropping {scene.dropped}; the preset "
                f"needs {preset.min_frames}",
                item.category,
                preset.dataset,
            )
            continue
        if scene.category is None:
            scene.category = item.category
        scene.meta["protocol"] = {
            **protocol,
            "selected_indices": list(item.indices),
            "notes": list(item.notes),
        }
        yield scene


def summarize(items: Iterable[Scene | SkippedScene]) -> dict[str, Any]:
    """Counts for the record: evaluated scenes, skipped scenes by reason, dropped frames."""
    items = list(items)
    skipped = [i for i in items if isinstance(i, SkippedScene)]
    scenes = [i for i in items if isinstance(i, Scene)]
    return {
        "evaluated": len(scenes),
        "skipped": len(skipped),
        "skipped_by_reason": dict(Counter(s.reason for s in skipped)),
        "skipped_scenes": [s.as_dict() for s in skipped],
        "dropped_frames": {s.scene_id: s.dropped for s in scenes if s.dropped},
    }


class ProtocolDataset:
    """A preset bound to its loader: what `build_dataset` returns for protocol presets."""

    def __init__(self, preset: Preset, loader: Any = None) -> None:
        self.preset = preset
        self.name = preset.name
        self._loader = loader

    @property
    def loader(self) -> Any:
        if self._loader is None:
            self._loader = self.preset.build_loader()
        return self._loader

    def sequences(self) -> list[str]:
        return list(self.loader.sequences())

    def load(self, sequence: str, frame_ids: Sequence[int] | None = None) -> Scene:
        return self.loader.load(sequence, frame_ids, invalid_frames=self.preset.invalid_frames)

    def plan(self, num_views: int | None = None) -> list[PlannedScene | SkippedScene]:
        return plan_protocol(self.preset, self.loader, num_views)[0]

    def scenes(self, num_views: int | None = None) -> Iterator[Scene | SkippedScene]:
        return protocol_scenes(self.preset, num_views, self.loader)

    def load_views(self, num_views: int | None) -> Scene:
        """The first evaluable scene of the protocol (with the `num_views` override)."""
        skipped = []
        for item in self.scenes(num_views):
            if isinstance(item, Scene):
                return item
            skipped.append(f"{item.scene_id}: {item.reason}")
        raise DataError(
            f"preset {self.name!r}: no scene could be loaded ({len(skipped)} skipped: "
            f"{'; '.join(skipped[:5])}); check dataset.root and datasets/README.md"
        )


def build_dataset(cfg: Mapping | DictConfig) -> Any:
    """A `dataset=` config → a protocol (configs with a `task`) or a plain loader.

    The loader is `cfg.dataset` when present (preset schema), else `cfg.name` (older configs).
    """
    params = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    if "task" in params:
        return ProtocolDataset(Preset.from_mapping(params))
    name = params.pop("name", None)
    loader = params.pop("dataset", None) or name
    if loader is None:
        raise ConfigError("dataset config needs 'dataset' (the loader, e.g. dataset: synthetic)")
    params.pop("source", None)
    return DATASETS.build(loader, **params)
