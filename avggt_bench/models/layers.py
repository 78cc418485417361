"""Transformer building blocks shared by DINOv2, the VGGT aggregator, the π³ decoder and heads.

Parameter names follow the official checkpoints (`norm1`, `attn.qkv`, `attn.q_norm`, `ls1.gamma`,
`mlp.fc1`, ...). Every attention goes through a mixer (`avggt_bench.attention.base`).
"""

from __future__ import annotations

import torch
from torch import nn

from avggt_bench.attention.base import AttentionContext, DenseMixer, Mixer
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.models.rope import RoPE2D

DENSE = DenseMixer("default")


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head attention whose token mixing is delegated to a mixer.

    `qk_norm`: LayerNorm over the head dim on q and k (one weight shared by all heads).
    `qk_cast_to_v`: cast q/k to v's dtype after the norm (π³ does; matters only under autocast).
    `rope`: 2D RoPE applied to q and k after the norm.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qk_norm: bool = False,
        qk_norm_eps: float = 1e-5,
        qk_cast_to_v: bool = False,
        rope: RoPE2D | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=qk_norm_eps) if qk_norm else None
        self.k_norm = nn.LayerNorm(self.head_dim, eps=qk_norm_eps) if qk_norm else None
        self.qk_cast_to_v = qk_cast_to_v
        self.rope = rope
        self.proj = nn.Linear(dim, dim)

    def qkv_heads(
        self,
        a: torch.Tensor,
        pos: torch.Tensor | None,
        layout: TokenLayout | None,
        keep_unrotated: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """q, k, v `[batch, heads, n, d]` after q/k-norm and RoPE (what a dense kernel receives),
        and the keys before RoPE when `keep_unrotated`."""
        batch, n, _dim = a.shape
        qkv = self.qkv(a).reshape(batch, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
            if self.qk_cast_to_v:
                q, k = q.to(v.dtype), k.to(v.dtype)
        k_unrotated = k if keep_unrotated else None
        if self.rope is not None and pos is not None:
            size = layout.rope_table_size if layout is not None else int(pos.max()) + 1
            q, k = self.rope(q, pos, size), self.rope(k, pos, size)
        return q, k, v, k_unrotated

    def merge_heads(self, o: torch.Tensor) -> torch.Tensor:
        batch, _, n, _ = o.shape
        return self.proj(o.transpose(1, 2).reshape(batch, n, self.num_heads * self.head_dim))

    def forward(
        self,
        a: torch.Tensor,
        pos: torch.Tensor | None = None,
        layout: TokenLayout | None = None,
        mixer: Mixer = DENSE,
    ) -> torch.Tensor:
        keep = getattr(mixer, "needs_unrotated_keys", False)
        q, k, v, k_unrotated = self.qkv_heads(a, pos, layout, keep)
        ctx = AttentionContext(layout=layout, x=a, k_unrotated=k_unrotated)
        return self.merge_heads(mixer(q, k, v, ctx))


class Block(nn.Module):
    """Pre-norm residual block, optional LayerScale (DINOv2, aggregator, decoder, head blocks)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
        layer_scale: bool = True,
        qk_norm: bool = False,
        qk_norm_eps: float = 1e-5,
        qk_cast_to_v: bool = False,
        rope: RoPE2D | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qk_norm, qk_norm_eps, qk_cast_to_v, rope)
        self.ls1 = LayerScale(dim) if layer_scale else None
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim) if layer_scale else None

    def attention_branch(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | None,
        layout: TokenLayout | None,
        mixer: Mixer = DENSE,
    ) -> torch.Tensor:
        out = self.attn(self.norm1(x), pos, layout, mixer)
        return self.ls1(out) if self.ls1 is not None else out

    def mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.mlp(self.norm2(x))
        return self.ls2(out) if self.ls2 is not None else out

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | None = None,
        layout: TokenLayout | None = None,
        mixer: Mixer = DENSE,
    ) -> torch.Tensor:
        x = x + self.attention_branch(x, pos, layout, mixer)
        return x + self.mlp_branch(x)
