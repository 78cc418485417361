"""Gathers across frame blocks outside the global layers: head inputs and the final outputs."""

from __future__ import annotations

import torch

from avggt_bench.models.predictions import Predictions
from avggt_bench.parallel.comm import all_gather_blocks, all_gather_blocks_to_host
from avggt_bench.parallel.shard import Shard


def gather_frames(t: torch.Tensor, shard: Shard, label: str, dim: int = 1) -> torch.Tensor:
    """Every rank's frames of `t` (frames along `dim`), in scene order, counted under `label`."""
    split = shard.split
    with shard.log.under(label):
        return all_gather_blocks(t, split.counts, split.rank, dim, shard.log, shard.group)


def gather_predictions(pred: Predictions, shard: Shard) -> Predictions:
    """The whole scene's predictions on every rank, in CPU memory, from each rank's frames (every
    tensor of `Predictions` has the frames on dim 1), so the job scores them as if
    single-process; gathered a few frames at a time, so a GPU never holds all of them."""
    split = shard.split

    def gather(t: torch.Tensor) -> torch.Tensor:
        return all_gather_blocks_to_host(t, split.counts, split.rank, shard.log, shard.group)

    with shard.log.under("outputs"):
        return pred.map(gather)
