"""Dataset front end: `build_dataset(cfg)` turns a `dataset=` config into a loader.

Every loader has `sequences()` (ids), `load(sequence, frame_ids=None) -> Scene`, and
`load_views(num_views)` (the job's entry: the protocol's default sequence with `num_views` views).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from avggt_bench.data.images import load_images, size_mismatch_message
from avggt_bench.data.scene import Scene
from avggt_bench.data.synthetic import SyntheticConfig, render_scene
from avggt_bench.errors import ConfigError, DataError
from avggt_bench.registry import Registry


class Dataset(Protocol):
    name: str

    def sequences(self) -> list[str]: ...

    def load(self, sequence: str, frame_ids: Sequence[int] | None = None) -> Scene: ...

    def load_views(self, num_views: int) -> Scene: ...


DATASETS: Registry[Any] = Registry("dataset")


@DATASETS.register("synthetic", "procedural room with exact ground truth, any number of views")
class SyntheticDataset:
    """One procedural scene per (seed, trajectory); the view count sets the trajectory sampling."""

    name = "synthetic"

    def __init__(self, **params: Any) -> None:
        fields = set(SyntheticConfig.__dataclass_fields__) - {"num_views"}
        unknown = sorted(set(params) - fields)
        if unknown:
            raise ConfigError(
                f"unknown synthetic dataset option(s) {unknown}; valid: {', '.join(sorted(fields))}"
            )
        self.params = params

    def config(self, num_views: int) -> SyntheticConfig:
        return SyntheticConfig(num_views=num_views, **self.params)

    def sequences(self) -> list[str]:
        return [render_scene_id(self.config(1))]

    def load(self, sequence: str | None = None, frame_ids: Sequence[int] | None = None) -> Scene:
        count = (max(frame_ids) + 1) if frame_ids else 16
        scene = self.load_views(count)
        return scene.subset(frame_ids) if frame_ids else scene

    def load_views(self, num_views: int) -> Scene:
        return render_scene(self.config(num_views))


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@DATASETS.register("folder", "your own images: every .png/.jpg/.jpeg in a folder, no ground truth")
class FolderDataset:
    """The sorted image files of `path`; `load_views(n)` takes n evenly spaced files."""

    name = "folder"

    def __init__(self, path: str | None = None) -> None:
        if not path:
            raise ConfigError("dataset=folder needs dataset.path=/folder/with/images")
        self.root = Path(path).expanduser()
        if not self.root.is_dir():
            raise DataError(f"image folder {self.root} does not exist; check dataset.path")
        self.files = sorted(p for p in self.root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise DataError(
                f"no {'/'.join(IMAGE_SUFFIXES)} files in {self.root}; the scene would be empty"
            )

    def sequences(self) -> list[str]:
        return [self.root.name]

    def load(self, sequence: str | None = None, frame_ids: Sequence[int] | None = None) -> Scene:
        ids = list(range(len(self.files))) if frame_ids is None else list(frame_ids)
        arrays = load_images([self.files[i] for i in ids])
        mixed = size_mismatch_message(
            [a.shape[:2] for a in arrays],
            fix=f"resize or crop the images in {self.root} to one size",
        )
        if mixed:
            raise DataError(f"{self.root}: {mixed}")
        images = torch.from_numpy(np.stack(arrays))
        return Scene("folder", self.root.name, images, frame_ids=[self.files[i].name for i in ids])

    def load_views(self, num_views: int) -> Scene:
        if num_views > len(self.files):
            raise DataError(
                f"{self.root} holds {len(self.files)} images; num_views={num_views} asks for more"
            )
        ids = np.linspace(0, len(self.files) - 1, num_views).round().astype(int).tolist()
        return self.load(frame_ids=ids)


def render_scene_id(cfg: SyntheticConfig) -> str:
    return f"seed{cfg.seed}-{cfg.trajectory}"


def build_dataset(cfg: Mapping | DictConfig) -> Dataset:
    """The loader named by `cfg.name`, built from the remaining keys."""
    params = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    name = params.pop("name", None)
    if name is None:
        raise ConfigError("dataset config needs a 'name' (e.g. dataset=synthetic)")
    return DATASETS.build(name, **params)
