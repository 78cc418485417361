"""VGGT's camera head: 4 refinement iterations of an adaLN-conditioned trunk.

facebookresearch/vggt `vggt/heads/camera_head.py::CameraHead`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from avggt_bench.models.layers import Block, Mlp


def activate_pose(raw: torch.Tensor) -> torch.Tensor:
    """Translation and quaternion linear, field of view through relu."""
    return torch.cat((raw[..., :3], raw[..., 3:7], F.relu(raw[..., 7:])), dim=-1)


class CameraHead(nn.Module):
    def __init__(self, dim: int, num_heads: int, trunk_depth: int = 4, iterations: int = 4) -> None:
        super().__init__()
        self.iterations = iterations
        # registration order = the official state-dict order
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, 9))
        self.trunk = nn.Sequential(
            *(Block(dim, num_heads, norm_eps=1e-5) for _ in range(trunk_depth))
        )
        self.token_norm = nn.LayerNorm(dim)
        self.trunk_norm = nn.LayerNorm(dim)
        self.embed_pose = nn.Linear(9, dim)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.adaln_norm = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.pose_branch = Mlp(dim, dim // 2, 9)

    def forward(self, last_layer: torch.Tensor) -> list[torch.Tensor]:
        """`last_layer` is A_23 `[B, S, P, 2C]`; returns each iteration's activated encoding."""
        c = self.token_norm(last_layer[:, :, 0])
        batch, frames, _ = c.shape
        raw: torch.Tensor | None = None
        outputs = []
        for _ in range(self.iterations):
            if raw is None:
                e = self.embed_pose(self.empty_pose_tokens.expand(batch, frames, -1))
            else:
                e = self.embed_pose(raw.detach())
            shift, scale, gate = self.poseLN_modulation(e).chunk(3, dim=-1)
            m = gate * (self.adaln_norm(c) * (1 + scale) + shift) + c
            delta = self.pose_branch(self.trunk_norm(self.trunk(m)))
            raw = delta if raw is None else raw + delta
            outputs.append(activate_pose(raw))
        return outputs
