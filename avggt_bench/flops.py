"""Analytic multiply-accumulate (MAC) counts of a whole model forward.

Conventions: one MAC per multiply-add of a matmul or convolution; softmax, LayerNorm, RoPE, GELU and
reductions are not counted. Records carry `macs` and, labelled separately, `flops = 2 * macs`.
For dense VGGT-1B at 800 frames of 518x392 the total is 35.11e15 (the paper's "~35 PFLOPs").
This module sums the model's parts (embeddings, frame layers, heads); each global layer's cost is
its route's answer (`Route.cost`, helpers in `avggt_bench.attention.cost`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avggt_bench.attention.cost import (
    GlobalLayerCost,
    attention_core_macs,
    conv_macs,
    linear_macs,
)
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import RouteSpec, build_route
from avggt_bench.errors import ConfigError

__all__ = [
    "GlobalLayerCost",
    "ModelCost",
    "attention_core_macs",
    "conv_macs",
    "global_layer_cost",
    "linear_macs",
    "model_cost",
    "pi3_cost",
    "vggt_cost",
]


def global_layer_cost(
    route: str | RouteSpec, layout: TokenLayout, dim: int, observed: dict | None = None
) -> GlobalLayerCost:
    """MACs of one global layer: the route's own `cost`; `observed` carries data-dependent facts
    of the last forward (e.g. a realised sparsity) for routes whose cost depends on the input."""
    return build_route(route).cost(layout, dim, observed)


def dino_macs(
    dim: int, depth: int, frames: int, h: int, w: int, patch: int = 14, regs: int = 4
) -> int:
    """DINOv2 patch conv and blocks for every frame (cls + registers + patches)."""
    n = 1 + regs + h * w
    per_frame = conv_macs(h * w, 3, dim, patch) + depth * (
        linear_macs(n, dim) + attention_core_macs(n, n, dim)
    )
    return frames * per_frame


def dpt_head_macs(
    dim_in: int,
    h: int,
    w: int,
    output_dim: int | None,
    features: int = 256,
    out_channels: Sequence[int] = (256, 512, 1024, 1024),
    patch: int = 14,
) -> int:
    """One frame through a DPT head (`models/vggt/dpt.py`): 112.9e9 MACs at 518x392 for VGGT-1B."""
    hw = h * w
    h4, w4 = -(-h // 2), -(-w // 2)
    sizes = [16 * hw, 4 * hw, hw, h4 * w4]  # l1..l4 spatial positions
    macs = hw * dim_in * sum(out_channels)  # projects (1x1)
    macs += conv_macs(hw, out_channels[0], out_channels[0], 4)  # transposed conv k4 s4
    macs += conv_macs(hw, out_channels[1], out_channels[1], 2)  # transposed conv k2 s2
    macs += conv_macs(sizes[3], out_channels[3], out_channels[3], 3)  # conv k3 s2
    macs += sum(conv_macs(n, c, features, 3) for n, c in zip(sizes, out_channels))  # layer*_rn
    rcu = conv_macs(1, features, features, 3) * 2
    macs += rcu * (sizes[3] + 2 * sizes[2] + 2 * sizes[1] + 2 * sizes[0])  # residual conv units
    macs += conv_macs(sizes[2] + sizes[1] + sizes[0] + 4 * sizes[0], features, features, 1)
    full = 64 * hw
    head = features // 2 if output_dim is not None else features
    macs += conv_macs(full, features, head, 3)  # output_conv1
    if output_dim is not None:
        pixels = hw * patch * patch
        macs += conv_macs(pixels, head, 32, 3) + conv_macs(pixels, 32, output_dim, 1)
    return macs


def camera_head_macs(dim: int, frames: int, trunk_depth: int = 4, iterations: int = 4) -> int:
    per_iter = frames * (9 * dim + dim * 3 * dim + dim * (dim // 2) + (dim // 2) * 9)
    per_iter += trunk_depth * (linear_macs(frames, dim) + attention_core_macs(frames, frames, dim))
    return iterations * per_iter


@dataclass
class ModelCost:
    """MACs by component plus the per-layer breakdown of the global layers."""

    components: dict[str, int]
    global_layers: list[GlobalLayerCost]

    @property
    def total(self) -> int:
        return sum(self.components.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "macs": self.total,
            "flops": 2 * self.total,
            "components": dict(self.components),
            "global_layers": [
                {
                    "route": g.route,
                    "linear": g.linear,
                    "attention": g.attention,
                    "extra": g.extra,
                    **g.info,
                }
                for g in self.global_layers
            ],
        }


def vggt_cost(
    arch,
    frames: int,
    h: int,
    w: int,
    routes: Sequence[str | RouteSpec],
    observed: Sequence[dict] | None = None,
) -> ModelCost:
    """MACs of a VGGT forward (batch 1) for `frames` views on an h x w patch grid."""
    dim, depth = arch.embed_dim, arch.depth
    if len(routes) != depth:
        raise ConfigError(f"expected {depth} routes, got {len(routes)}")
    layout = TokenLayout(frames=frames, grid=(h, w), num_special=5, reference_frame=True)
    p = layout.tokens_per_frame
    seen = observed or [None] * len(routes)
    layers = [global_layer_cost(r, layout, dim, o) for r, o in zip(routes, seen)]
    head_dim = 2 * dim
    return ModelCost(
        components={
            "patch_embed": dino_macs(arch.dino.embed_dim, arch.dino.depth, frames, h, w),
            "frame_linear": depth * linear_macs(frames * p, dim),
            "frame_attention": depth * frames * attention_core_macs(p, p, dim),
            "global_linear": sum(g.linear for g in layers),
            "global_attention": sum(g.attention for g in layers),
            "global_extra": sum(g.extra for g in layers),
            "camera_head": camera_head_macs(head_dim, frames),
            "depth_head": frames
            * dpt_head_macs(head_dim, h, w, 2, arch.dpt_features, arch.dpt_out_channels),
            "point_head": frames
            * dpt_head_macs(head_dim, h, w, 4, arch.dpt_features, arch.dpt_out_channels),
        },
        global_layers=layers,
    )


def pi3_cost(
    arch,
    frames: int,
    h: int,
    w: int,
    routes: Sequence[str | RouteSpec],
    observed: Sequence[dict] | None = None,
) -> ModelCost:
    """MACs of a π³ forward (batch 1): encoder, 36-block decoder, head decoders and heads."""
    dim, globals_ = arch.dim, arch.depth // 2
    if len(routes) != globals_:
        raise ConfigError(f"expected {globals_} routes, got {len(routes)}")
    layout = TokenLayout(frames=frames, grid=(h, w), num_special=5, reference_frame=False)
    t, p, hw = layout.num_tokens, layout.tokens_per_frame, h * w
    seen = observed or [None] * len(routes)
    layers = [global_layer_cost(r, layout, dim, o) for r, o in zip(routes, seen)]
    block = linear_macs(t, dim) + frames * attention_core_macs(p, p, dim)
    outs = (dim, dim, arch.camera_dim)  # point, conf, camera decoders
    head_decoders = sum(t * 2 * dim * dim + arch.head_blocks * block + t * dim * o for o in outs)
    cam = arch.camera_dim
    camera_head = frames * (hw * 6 * cam * cam + 2 * cam * cam + cam * 12)
    pixel_heads = frames * hw * dim * (3 + 1) * arch.patch_size**2
    return ModelCost(
        components={
            "patch_embed": dino_macs(arch.dino.embed_dim, arch.dino.depth, frames, h, w),
            "frame_linear": globals_ * linear_macs(t, dim),
            "frame_attention": globals_ * frames * attention_core_macs(p, p, dim),
            "global_linear": sum(g.linear for g in layers),
            "global_attention": sum(g.attention for g in layers),
            "global_extra": sum(g.extra for g in layers),
            "head_decoders": head_decoders,
            "heads": pixel_heads + camera_head,
        },
        global_layers=layers,
    )


def model_cost(model, frames: int, image_hw: tuple[int, int]) -> ModelCost:
    """Cost of `model` (built by `build_model`) for one scene of `frames` views at `image_hw`."""
    patch = model.arch.patch_size
    h, w = image_hw[0] // patch, image_hw[1] // patch
    routes = [str(r) for r in model.routes]
    layout = TokenLayout(frames, (h, w), model.num_special, model.family == "vggt")
    observed = [r.describe(layout) for r in model.routes]
    if model.family == "vggt":
        return vggt_cost(model.arch, frames, h, w, routes, observed)
    if model.family == "pi3":
        return pi3_cost(model.arch, frames, h, w, routes, observed)
    raise ConfigError(f"no cost model for model family {model.family!r}")


def preset_cost_table(
    family: str, views: Sequence[int], presets: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Total MACs of the full-size model (VGGT-1B or π³ at 518x392, a 28x37 patch grid) under
    every attention preset that applies to `family`, with the ratio to dense; one row per preset.
    Presets whose routes do not apply to the family are left out."""
    from avggt_bench.attention.config import available_presets, resolve_routes
    from avggt_bench.models.pi3.model import PI3
    from avggt_bench.models.vggt.model import VGGT_1B

    arch, cost, layers = {
        "vggt": (VGGT_1B, vggt_cost, VGGT_1B.depth),
        "pi3": (PI3, pi3_cost, PI3.depth // 2),
    }[family]
    dense = {v: cost(arch, v, 28, 37, ["global"] * layers).total for v in views}
    rows = []
    for name in presets if presets is not None else available_presets():
        try:
            routes = resolve_routes(name, family, layers)
            totals = {v: cost(arch, v, 28, 37, routes).total for v in views}
        except ConfigError:  # the preset does not apply to this family (e.g. FastVGGT on π³)
            continue
        rows.append({"preset": name, **{v: (totals[v], dense[v] / totals[v]) for v in views}})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Print (or write) the cost table of every attention preset at full size."""
    import argparse

    import pandas as pd

    parser = argparse.ArgumentParser(
        prog="python -m avggt_bench.flops",
        description="Analytic MACs of VGGT-1B and π³ at 518x392 under every attention preset, "
        "with the ratio to dense: the cost model that the report's speedups are compared with.",
    )
    parser.add_argument("--views", default="16,100,300,800", help="comma-separated view counts")
    parser.add_argument("--out", help="write the markdown tables to this file")
    args = parser.parse_args(argv)
    views = [int(v) for v in args.views.split(",")]
    parts = [
        "# Cost model: MACs at 518x392 per attention preset",
        "",
        "Generated by `python -m avggt_bench.flops`; do not edit by hand. One MAC per multiply-add"
        " of a matmul or convolution (softmax, norms, RoPE not counted); each cell is the total"
        " MACs of one forward and, in brackets, dense / preset. A route whose cost depends on the"
        " data is costed as it answers before any forward: block-sparse at its rho cap (an upper"
        " bound on its sparsity; the records carry the realised one). Presets that do not apply"
        " to a model are left out.",
    ]
    for family, title in (("vggt", "VGGT-1B"), ("pi3", "π³")):
        rows = preset_cost_table(family, views)
        table = pd.DataFrame(
            [
                {
                    "preset": r["preset"],
                    **{f"{v} views": f"{r[v][0]:.3g} ({r[v][1]:.2f}x)" for v in views},
                }
                for r in rows
            ]
        ).set_index("preset")
        parts += ["", f"## {title}", "", table.to_markdown()]
    text = "\n".join(parts) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
