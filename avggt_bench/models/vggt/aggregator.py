"""VGGT's aggregator: DINOv2 patch tokens, then 24 alternating frame/global blocks.

The aggregator holds VGGT's embeddings (patch tokens, a camera and four register tokens per frame,
frame 0 with its own pair) and the blocks; the alternating loop, with the per-layer routes of the
global blocks, is the trunk shared with π³ (`avggt_bench.models.trunk`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import Route, dense_routes
from avggt_bench.models.dinov2 import DinoArch, DinoV2
from avggt_bench.models.images import IMAGENET_MEAN, IMAGENET_STD
from avggt_bench.models.layers import Block
from avggt_bench.models.rope import RoPE2D
from avggt_bench.models.trunk import checked_routes, run_trunk
from avggt_bench.parallel.shard import Shard

NUM_SPECIAL = 5  # 1 camera + 4 register tokens per frame


def first_other_tokens(
    param: torch.Tensor, batch: int, frames: int, has_first: bool = True
) -> torch.Tensor:
    """Expand a `[1, 2, n, C]` first-frame/other-frames token pair to `[batch*frames, n, C]`;
    `has_first` False: the frames are a later block of the scene (frame-sharded), all "others"."""
    if not has_first:
        return (
            param[:, 1:]
            .expand(batch, frames, *param.shape[2:])
            .reshape(batch * frames, *param.shape[2:])
        )
    first = param[:, 0:1].expand(batch, 1, *param.shape[2:])
    others = param[:, 1:].expand(batch, frames - 1, *param.shape[2:])
    return torch.cat((first, others), dim=1).reshape(batch * frames, *param.shape[2:])


class Aggregator(nn.Module):
    def __init__(
        self,
        dino: DinoArch,
        embed_dim: int = 1024,
        depth: int = 24,
        num_heads: int = 16,
        img_size: int = 518,
        patch_size: int = 14,
        num_registers: int = 4,
        rope_base: float = 100.0,
    ) -> None:
        super().__init__()
        if dino.embed_dim != embed_dim:
            raise ValueError(
                f"aggregator width {embed_dim} must equal the DINOv2 width {dino.embed_dim}"
            )
        self.depth = depth
        self.patch_size = patch_size
        self.rope = RoPE2D(rope_base)
        self.patch_embed = DinoV2(dino, img_size, patch_size, num_registers=4, mask_token=True)
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, embed_dim))
        self.register_token = nn.Parameter(torch.zeros(1, 2, num_registers, embed_dim))

        def block() -> Block:
            return Block(embed_dim, num_heads, norm_eps=1e-5, qk_norm=True, rope=self.rope)

        self.frame_blocks = nn.ModuleList(block() for _ in range(depth))
        self.global_blocks = nn.ModuleList(block() for _ in range(depth))
        self.routes: list[Route] = dense_routes(depth)

    def set_routes(self, routes: Sequence[Route]) -> None:
        self.routes = checked_routes(routes, self.depth)

    def forward(
        self, images: torch.Tensor, keep: Iterable[int] | None = None, shard: Shard | None = None
    ) -> tuple[list[torch.Tensor | None], TokenLayout]:
        """Return `[A_0 .. A_{depth-1}]` (`[B, S, P, 2C]`, None where not kept) and the layout.

        `keep` lists the layer indices to store; None stores all (the official behaviour). With a
        `shard`, `images` are this rank's frames and so are the outputs (`avggt_bench.parallel`).
        """
        batch, frames, _, height, width = images.shape
        grid = (height // self.patch_size, width // self.patch_size)

        # constants in float32 (the official buffers); cast only for bf16-weight runs (VGGT*)
        const = dict(device=images.device, dtype=torch.promote_types(images.dtype, torch.float32))
        if images.dtype == torch.bfloat16:
            const["dtype"] = torch.bfloat16
        mean = torch.tensor(IMAGENET_MEAN, **const).view(1, 1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, **const).view(1, 1, 3, 1, 1)
        x = ((images - mean) / std).reshape(batch * frames, 3, height, width)
        has_first = shard is None or shard.split.start == 0
        special = (
            first_other_tokens(self.camera_token, batch, frames, has_first),
            first_other_tokens(self.register_token, batch, frames, has_first),
        )
        out = run_trunk(
            special,
            self.patch_embed(x),
            batch,
            grid,
            self.frame_blocks,
            self.global_blocks,
            self.routes,
            keep=range(self.depth) if keep is None else set(keep),
            reference_frame=True,
            shard=shard,
        )
        return out.layers, out.layout
