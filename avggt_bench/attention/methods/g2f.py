"""AVGGT's layer-replacing routes: `frame` runs the global block on each frame alone (G2F), `mean`
gives every query the mean value (G2M), `skip` bypasses the block (or only its attention). The
`avggt` method (methods/avggt.py) puts them on the early global layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import nn

from avggt_bench.attention.base import AttentionContext, DenseMixer
from avggt_bench.attention.cost import GlobalLayerCost, attention_core_macs, linear_macs
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import ROUTES, LocalRoute, Route, RouteSpec, softmax_attention
from avggt_bench.errors import ConfigError


def _check_params(spec: RouteSpec, allowed: Mapping[str, tuple]) -> dict[str, Any]:
    out = {}
    for key, value in spec.params.items():
        if key not in allowed:
            raise ConfigError(
                f"route {spec}: unknown parameter {key!r}; valid: {', '.join(allowed) or 'none'}"
            )
        valid = allowed[key]
        if valid and value not in valid:
            raise ConfigError(f"route {spec}: {key}={value!r}; valid: {', '.join(map(str, valid))}")
        out[key] = value
    return out


@ROUTES.register("frame", "G2F: the global block's weights run on each frame alone")
class FrameRoute(LocalRoute):
    name = "frame"

    def __init__(self, spec: RouteSpec, policy: str = "default") -> None:
        _check_params(spec, {})
        super().__init__(spec)
        self.mixer = DenseMixer(policy)

    def run(self, block: nn.Module, x, pos, layout: TokenLayout) -> torch.Tensor:
        batch, tokens, dim = x.shape
        per = layout.tokens_per_frame
        out = block(
            x.reshape(batch * layout.frames, per, dim),
            pos.reshape(batch * layout.frames, per, 2),
            layout.per_frame(),
            self.mixer,
        )
        return out.reshape(batch, tokens, dim)

    sharding: ClassVar[str] = "per frame: no communication"

    def run_sharded(self, block: nn.Module, x, pos, layout: TokenLayout, shard) -> torch.Tensor:
        return self.run(block, x, pos, replace(layout, frames=shard.split.count))

    def cost(self, layout: TokenLayout, dim: int, observed: dict | None = None) -> GlobalLayerCost:
        p = layout.tokens_per_frame
        attn = layout.frames * attention_core_macs(p, p, dim)
        return GlobalLayerCost(str(self.spec), linear_macs(layout.num_tokens, dim), attn)

    def reference(self, q, k, v, ctx: AttentionContext) -> torch.Tensor:
        per = ctx.layout.tokens_per_frame
        frames = [slice(f * per, (f + 1) * per) for f in range(ctx.layout.frames)]
        return torch.cat([softmax_attention(q[:, :, f], k[:, :, f], v[:, :, f]) for f in frames], 2)


class MeanMixer:
    """G2M as a mixer: every query gets the mean value (global scope), or a softmax over one
    mean key/value pair per frame (per-frame scope, post-RoPE mean keys)."""

    def __init__(self, scope: str = "global", include_special: bool = False) -> None:
        self.scope = scope
        self.include_special = include_special

    def __call__(self, q, k, v, ctx: AttentionContext) -> torch.Tensor:
        layout = ctx.layout
        batch, heads, tokens, d = v.shape
        start = 0 if self.include_special else layout.num_special
        v_f = v.view(batch, heads, layout.frames, layout.tokens_per_frame, d)[:, :, :, start:]
        if self.scope == "global":
            v_bar = v_f.sum((2, 3), dtype=torch.float32) / (v_f.shape[2] * v_f.shape[3])
            return v_bar[:, :, None].to(v.dtype).expand(batch, heads, tokens, d)
        k_f = k.view(batch, heads, layout.frames, layout.tokens_per_frame, d)[:, :, :, start:]
        k_bar = k_f.mean(3, dtype=torch.float32).to(q.dtype)
        v_bar = v_f.mean(3, dtype=torch.float32).to(v.dtype)
        return torch.nn.functional.scaled_dot_product_attention(q, k_bar, v_bar)


@ROUTES.register("mean", "G2M: every query receives the mean value (no query/key interaction)")
class MeanRoute(Route):
    name = "mean"

    def __init__(self, spec: RouteSpec, policy: str = "default") -> None:
        params = _check_params(spec, {"scope": ("global", "per_frame"), "include_special": ()})
        super().__init__(spec)
        self.mixer = MeanMixer(
            params.get("scope", "global"), bool(params.get("include_special", 0))
        )

    def run(self, block: nn.Module, x, pos, layout: TokenLayout) -> torch.Tensor:
        if self.mixer.scope == "per_frame":
            x = x + block.attention_branch(x, pos, layout, self.mixer)
            return x + block.mlp_branch(x)
        # One output row for every token: only v is projected, proj runs once (the cost model).
        batch, _, dim = x.shape
        a = block.norm1(x)
        start = 0 if self.mixer.include_special else layout.num_special
        a = a.view(batch, layout.frames, layout.tokens_per_frame, dim)[:, :, start:]
        qkv = block.attn.qkv
        v = nn.functional.linear(a, qkv.weight[2 * dim :], qkv.bias[2 * dim :])
        v_bar = v.sum((1, 2), dtype=torch.float32) / (v.shape[1] * v.shape[2])
        out = block.attn.proj(v_bar.to(v.dtype))[:, None]
        x = x + (block.ls1(out) if block.ls1 is not None else out)
        return x + block.mlp_branch(x)

    def cost(self, layout: TokenLayout, dim: int, observed: dict | None = None) -> GlobalLayerCost:
        t = layout.num_tokens
        if self.mixer.scope == "per_frame":
            attn = attention_core_macs(t, layout.frames, dim)
            return GlobalLayerCost(str(self.spec), linear_macs(t, dim), attn)
        rows = t if self.mixer.include_special else layout.frames * layout.num_patches
        # v projection of the averaged rows, proj once, MLP on every token
        return GlobalLayerCost(str(self.spec), rows * dim * dim + dim * dim + 8 * t * dim * dim, 0)

    def reference(self, q, k, v, ctx: AttentionContext) -> torch.Tensor:
        layout = ctx.layout
        start = 0 if self.mixer.include_special else layout.num_special
        members = [
            [f * layout.tokens_per_frame + i for i in range(start, layout.tokens_per_frame)]
            for f in range(layout.frames)
        ]
        if self.mixer.scope == "global":
            flat = [t for frame in members for t in frame]
            return v[:, :, flat].mean(2, keepdim=True).expand_as(v)
        k_bar = torch.stack([k[:, :, m].mean(2) for m in members], 2)
        v_bar = torch.stack([v[:, :, m].mean(2) for m in members], 2)
        return softmax_attention(q, k_bar, v_bar)


@ROUTES.register("skip", "the global block is bypassed (part=block) or only its attention")
class SkipRoute(LocalRoute):
    name = "skip"

    def __init__(self, spec: RouteSpec, policy: str = "default") -> None:
        params = _check_params(spec, {"part": ("block", "attention")})
        super().__init__(spec)
        self.part = params.get("part", "block")

    def run(self, block: nn.Module, x, pos, layout: TokenLayout) -> torch.Tensor:
        if self.part == "block":
            return x
        return x + block.mlp_branch(x)

    sharding: ClassVar[str] = "per token: no communication"

    def run_sharded(self, block: nn.Module, x, pos, layout: TokenLayout, shard) -> torch.Tensor:
        return self.run(block, x, pos, layout)

    def cost(self, layout: TokenLayout, dim: int, observed: dict | None = None) -> GlobalLayerCost:
        mlp = 8 * layout.num_tokens * dim * dim if self.part == "attention" else 0
        return GlobalLayerCost(str(self.spec), mlp, 0)
