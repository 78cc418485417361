"""Which frames a rank owns, and the process-wide frame-parallel context.

Frames are split in contiguous blocks over the ranks, the larger blocks first, so frame 0 (VGGT's
reference frame) is always on rank 0 and concatenating the blocks in rank order gives the scene's
frame order back. Not distributed (the default) means no context: the models run exactly as before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from avggt_bench.errors import ConfigError
from avggt_bench.parallel.comm import CommLog


@dataclass(frozen=True)
class FrameSplit:
    """Contiguous frame blocks of one scene: rank r owns frames `bounds[r]:bounds[r + 1]`."""

    bounds: tuple[int, ...]
    rank: int

    @property
    def world(self) -> int:
        return len(self.bounds) - 1

    @property
    def total(self) -> int:
        return self.bounds[-1]

    @property
    def start(self) -> int:
        return self.bounds[self.rank]

    @property
    def stop(self) -> int:
        return self.bounds[self.rank + 1]

    @property
    def count(self) -> int:
        return self.stop - self.start

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(b - a for a, b in zip(self.bounds[:-1], self.bounds[1:]))


def split_frames(frames: int, world: int, rank: int = 0) -> FrameSplit:
    """Blocks of `frames // world` frames, one more on the first `frames % world` ranks."""
    if frames < world:
        raise ConfigError(
            f"{frames} frame(s) cannot be split over {world} ranks (each rank needs at least one "
            "frame); use fewer processes (torchrun --nproc-per-node) or more views"
        )
    base, extra = divmod(frames, world)
    bounds = [0]
    for r in range(world):
        bounds.append(bounds[-1] + base + (1 if r < extra else 0))
    return FrameSplit(tuple(bounds), rank)


@dataclass
class FrameParallel:
    """A torch.distributed process group that splits every scene's frames over its ranks.

    `log` counts the bytes each collective of this rank received, per label (global layer, head);
    every forward starts a new count (`shard`), so it holds the latest forward's bytes.
    """

    world: int
    rank: int
    group: Any = None
    log: CommLog | None = None

    def __post_init__(self) -> None:
        if self.log is None:
            self.log = CommLog(self.world)

    def shard(self, frames: int) -> Shard:
        """This rank's part of a scene of `frames` views, for one forward."""
        self.log.reset()
        return Shard(self, split_frames(frames, self.world, self.rank))


@dataclass(frozen=True)
class Shard:
    """One rank's part of one scene: the process group and the frame split."""

    parallel: FrameParallel
    split: FrameSplit

    @property
    def log(self) -> CommLog:
        return self.parallel.log

    @property
    def group(self) -> Any:
        return self.parallel.group

    def own_frames(self, images: Any, device: Any) -> Any:
        """This rank's frames of `[B, S, ...]` images, on `device` (the job keeps a sharded
        scene's images on the CPU, so a GPU holds only its own block)."""
        return images[:, self.split.start : self.split.stop].to(device)


_ACTIVE: list[FrameParallel] = []


def current() -> FrameParallel | None:
    """The active frame-parallel context, or None (single process: nothing is sharded)."""
    return _ACTIVE[-1] if _ACTIVE else None


def shard_for(frames: int) -> Shard | None:
    """This rank's shard of a scene of `frames` views, or None when not distributed (or alone)."""
    par = current()
    if par is None or par.world == 1:
        return None
    return par.shard(frames)


@contextlib.contextmanager
def frame_parallel(par: FrameParallel) -> Iterator[FrameParallel]:
    """Run the models frame-sharded over `par` inside the block."""
    _ACTIVE.append(par)
    try:
        yield par
    finally:
        _ACTIVE.remove(par)
