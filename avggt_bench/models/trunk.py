"""The alternating frame/global attention trunk that VGGT's aggregator and π³'s decoder share.

Each layer runs a frame block (attention inside each view) and then a global block (attention over
every token of the scene) through that layer's *route* (`avggt_bench.attention.routes`), which
decides how the global layer mixes tokens (dense, per frame, subsampled, merged, ...). A model
family brings only its embeddings (patch tokens, the special tokens prepended to each frame) and
its heads; the trunk lays the tokens out, gives them their RoPE positions and keeps the outputs of
the layers the heads read.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from avggt_bench.attention.base import Mixer
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import Route
from avggt_bench.models.layers import DENSE
from avggt_bench.models.rope import patch_positions
from avggt_bench.parallel.shard import Shard


@dataclass
class TrunkOutput:
    """What the trunk hands to the heads.

    `layers[i]` is `[B, S, P, 2C]`: the frame block's output of layer i concatenated with the
    global layer's output (None for a layer not kept). `positions` `[B*S, P, 2]` are each frame's
    RoPE positions; `layout` is the scene's, and `layout.per_frame()` what frame attention sees.
    """

    layers: list[torch.Tensor | None]
    positions: torch.Tensor
    layout: TokenLayout


def checked_routes(routes: Sequence[Route], num_layers: int) -> list[Route]:
    """The routes as a list, one per global layer, or a ValueError."""
    if len(routes) != num_layers:
        raise ValueError(f"expected {num_layers} routes, got {len(routes)}")
    return list(routes)


def run_trunk(
    special: Sequence[torch.Tensor],
    patches: torch.Tensor,
    batch: int,
    grid: tuple[int, int],
    frame_blocks: Sequence[nn.Module],
    global_blocks: Sequence[nn.Module],
    routes: Sequence[Route],
    keep: Collection[int],
    reference_frame: bool = False,
    frame_mixer: Mixer = DENSE,
    shard: Shard | None = None,
) -> TrunkOutput:
    """Run the alternating layers over `[B*S, n, C]` special tokens and `[B*S, h*w, C]` patches.

    `special` are prepended to each frame's patches in the order given. `keep` lists the layers
    whose outputs are stored. `reference_frame` marks a model whose frame 0 is special (VGGT);
    `frame_mixer` is the dense attention of the frame blocks (the model's SDPA policy).
    With a `shard` (`avggt_bench.parallel`), the tokens are this rank's frames only: frame blocks
    and kept layers stay local, each global layer runs its route's `run_sharded`.
    """
    if not len(frame_blocks) == len(global_blocks) == len(routes):
        raise ValueError(
            f"{len(frame_blocks)} frame blocks, {len(global_blocks)} global blocks and "
            f"{len(routes)} routes: one of each per layer"
        )
    tokens = torch.cat((*special, patches), dim=1)
    frames = tokens.shape[0] // batch  # this rank's frames when sharded
    per_frame, dim = tokens.shape[1], tokens.shape[2]
    if shard is not None and shard.split.count != frames:
        raise ValueError(f"{frames} frames given, the shard holds {shard.split.count}")
    layout = TokenLayout(
        frames=shard.split.total if shard is not None else frames,
        grid=grid,
        num_special=per_frame - patches.shape[1],
        reference_frame=reference_frame,
    )
    frame_layout = layout.per_frame()
    pos_frame = patch_positions(batch * frames, *grid, layout.num_special, tokens.device)
    pos_global = pos_frame.reshape(batch, frames * per_frame, 2)

    layers: list[torch.Tensor | None] = [None] * len(routes)
    for i, (frame_block, global_block, route) in enumerate(
        zip(frame_blocks, global_blocks, routes, strict=True)
    ):
        tokens = frame_block(tokens, pos_frame, frame_layout, frame_mixer)
        frame_out = tokens
        flat = tokens.reshape(batch, frames * per_frame, dim)
        if shard is None:
            tokens = route.run(global_block, flat, pos_global, layout)
        else:
            with shard.log.under(f"global {i}"):
                tokens = route.run_sharded(global_block, flat, pos_global, layout, shard)
        if i in keep:
            layers[i] = torch.cat(
                (
                    frame_out.reshape(batch, frames, per_frame, dim),
                    tokens.reshape(batch, frames, per_frame, dim),
                ),
                dim=-1,
            )
        tokens = tokens.reshape(batch * frames, per_frame, dim)
    return TrunkOutput(layers, pos_frame, layout)
