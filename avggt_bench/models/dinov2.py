"""DINOv2 ViT/14 with 4 registers: the patch encoder of VGGT and π³ (`dinov2_vitl14_reg`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avggt_bench.attention.base import Mixer
from avggt_bench.models.layers import DENSE, Block


@dataclass(frozen=True)
class DinoArch:
    """Width, depth and heads of a DINOv2 variant."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int

    @property
    def mlp_dim(self) -> int:
        return 4 * self.embed_dim


DINO_VITL14_REG = DinoArch("dinov2_vitl14_reg", 1024, 24, 16)
DINO_VITS14_REG = DinoArch("dinov2_vits14_reg", 384, 12, 6)


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2(nn.Module):
    """Returns the normalised patch tokens `[batch, h*w, C]` (cls and DINO registers dropped)."""

    def __init__(
        self,
        arch: DinoArch,
        img_size: int = 518,
        patch_size: int = 14,
        num_registers: int = 4,
        mask_token: bool = True,
        mixer: Mixer = DENSE,
    ) -> None:
        super().__init__()
        dim = arch.embed_dim
        self.arch = arch
        self.patch_size = patch_size
        self.grid_side = img_size // patch_size
        self.num_registers = num_registers
        self.mixer = mixer
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid_side**2, dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_registers, dim))
        if mask_token:  # in VGGT's checkpoint, unused at inference
            self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.patch_embed = PatchEmbed(dim, patch_size)
        self.blocks = nn.ModuleList(
            Block(dim, arch.num_heads, norm_eps=1e-6) for _ in range(arch.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def position_embedding(self, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
        """The stored table for the native square grid, else a bicubic antialiased resize."""
        if h * w == self.grid_side**2 and h == w:
            return self.pos_embed
        table = self.pos_embed.float()
        cls_row, grid = table[:, :1], table[:, 1:]
        side, dim = self.grid_side, table.shape[-1]
        grid = grid.reshape(1, side, side, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, dim)
        return torch.cat((cls_row, grid), dim=1).to(dtype)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = images.shape
        h, w = height // self.patch_size, width // self.patch_size
        x = self.patch_embed(images)
        x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        x = x + self.position_embedding(h, w, x.dtype)
        x = torch.cat((x[:, :1], self.register_tokens.expand(batch, -1, -1), x[:, 1:]), dim=1)
        for block in self.blocks:
            x = block(x, mixer=self.mixer)
        return self.norm(x)[:, 1 + self.num_registers :]
