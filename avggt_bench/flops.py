"""Analytic multiply-accumulate (MAC) counts per layer kind (avggt.md §10).

Conventions: one MAC per multiply-add of a matmul or convolution; softmax, LayerNorm, RoPE, GELU and
reductions are not counted. Records carry `macs` and, labelled separately, `flops = 2 * macs`.
For dense VGGT-1B at 800 frames of 518x392 the total is 35.11e15 (the paper's "~35 PFLOPs").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import RouteSpec, parse_route
from avggt_bench.errors import ConfigError
from avggt_bench.registry import Registry


def linear_macs(tokens: int, dim: int, mlp_ratio: float = 4.0) -> int:
    """qkv (3C²) + proj (C²) + MLP (2·ratio·C²) per token: 12·N·C² for ratio 4."""
    return int(tokens * dim * dim * (4 + 2 * mlp_ratio))


def attention_core_macs(queries: int, keys: int, dim: int) -> int:
    """Q·Kᵀ and P·V over all heads: 2·n_q·n_k·C."""
    return 2 * queries * keys * dim


def conv_macs(positions: int, c_in: int, c_out: int, kernel: int) -> int:
    return positions * c_in * c_out * kernel * kernel


@dataclass(frozen=True)
class GlobalLayerCost:
    """Cost of one global layer under its route."""

    route: str
    linear: int
    attention: int
    extra: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.linear + self.attention + self.extra


# (spec, layout, width, observed facts of the last forward or None) -> cost
RouteCost = Callable[..., GlobalLayerCost]
ROUTE_COSTS: Registry[RouteCost] = Registry("route cost model")


@ROUTE_COSTS.register("global")
def _global_cost(
    spec: RouteSpec, layout: TokenLayout, dim: int, observed: dict | None = None
) -> GlobalLayerCost:
    t = layout.num_tokens
    return GlobalLayerCost(str(spec), linear_macs(t, dim), attention_core_macs(t, t, dim))


@ROUTE_COSTS.register("frame")
def _frame_cost(
    spec: RouteSpec, layout: TokenLayout, dim: int, observed: dict | None = None
) -> GlobalLayerCost:
    p = layout.tokens_per_frame
    attn = layout.frames * attention_core_macs(p, p, dim)
    return GlobalLayerCost(str(spec), linear_macs(layout.num_tokens, dim), attn)


@ROUTE_COSTS.register("mean")
def _mean_cost(
    spec: RouteSpec, layout: TokenLayout, dim: int, observed: dict | None = None
) -> GlobalLayerCost:
    t = layout.num_tokens
    if spec.params.get("scope", "global") == "per_frame":
        return GlobalLayerCost(
            str(spec), linear_macs(t, dim), attention_core_macs(t, layout.frames, dim)
        )
    rows = t if spec.params.get("include_special") else layout.frames * layout.num_patches
    # v projection of the averaged rows, proj once, MLP on every token
    return GlobalLayerCost(str(spec), rows * dim * dim + dim * dim + 8 * t * dim * dim, 0)


@ROUTE_COSTS.register("skip")
def _skip_cost(
    spec: RouteSpec, layout: TokenLayout, dim: int, observed: dict | None = None
) -> GlobalLayerCost:
    mlp = 8 * layout.num_tokens * dim * dim if spec.params.get("part") == "attention" else 0
    return GlobalLayerCost(str(spec), mlp, 0)


@ROUTE_COSTS.register("sga")
def _sga_cost(
    spec: RouteSpec, layout: TokenLayout, dim: int, observed: dict | None = None
) -> GlobalLayerCost:
    from avggt_bench.attention.sga import SGAOptions, kept_set

    opts = SGAOptions.from_params(spec.params)
    ks = kept_set(layout, opts)
    t = layout.num_tokens
    if ks.num_kept == t and ks.num_dropped == 0:
        return GlobalLayerCost(str(spec), linear_macs(t, dim), attention_core_macs(t, t, dim))
    columns = 0
    if opts.mean and ks.mean_mask.any():
        columns = int(ks.mean_mask.any(1).sum()) if opts.mean_scope == "per_frame" else 1
    extra = (2 * t * dim if opts.diag else 0) + (
        2 * int(ks.mean_mask.sum()) * dim if columns else 0
    )
    return GlobalLayerCost(
        str(spec),
        linear_macs(t, dim),
        attention_core_macs(t, ks.num_kept + columns, dim),
        extra,
        {"kept": ks.num_kept, "dropped": ks.num_dropped, "mean_columns": columns},
    )


@ROUTE_COSTS.register("merge")
def _merge_cost(
    spec: RouteSpec, layout: TokenLayout, dim: int, observed: dict | None = None
) -> GlobalLayerCost:
    from avggt_bench.attention.methods.fastvggt import MergeOptions, reduced_length

    n = reduced_length(layout, MergeOptions.from_params(spec.params))
    t, length = layout.num_tokens, n["length"]
    return GlobalLayerCost(
        str(spec),
        3 * t * dim * dim + length * dim * dim + 8 * t * dim * dim,  # qkv, proj on L, MLP
        attention_core_macs(length, length, dim),
        n["src"] * n["matched_dst"] * dim,  # the bf16 matching
        n,
    )


@ROUTE_COSTS.register("block_sparse")
def _block_sparse_cost(
    spec: RouteSpec, layout: TokenLayout, dim: int, observed: dict | None = None
) -> GlobalLayerCost:
    from avggt_bench.attention.methods.block_sparse import BlockSparseOptions, geometry

    opts = BlockSparseOptions.from_params(spec.params)
    geo = geometry(layout, opts, "cpu")
    t = layout.num_tokens
    if observed and "patch_sparsity" in observed:
        sparsity, source = observed["patch_sparsity"], "realised"
    else:  # before any forward: the cap rho bounds the sparsity from above
        sparsity, source = (opts.rho or 0.0), "rho cap (upper bound)"
    kept_patch_keys = (1.0 - sparsity) * geo.k_patch_blocks * opts.k_block
    sink_keys = (geo.k_blocks - geo.k_patch_blocks) * opts.k_block  # block-granular
    attn = attention_core_macs(geo.t_s, t, dim)  # special queries attend densely
    attn += int(2 * geo.t_p * (kept_patch_keys + sink_keys) * dim)
    scores = geo.q_blocks * geo.k_patch_blocks * dim
    info = {"patch_sparsity": sparsity, "sparsity_source": source}
    return GlobalLayerCost(str(spec), linear_macs(t, dim), attn, scores, info)


def global_layer_cost(
    route: str | RouteSpec, layout: TokenLayout, dim: int, observed: dict | None = None
) -> GlobalLayerCost:
    """MACs of one global layer; `observed` carries data-dependent facts of the last forward
    (e.g. the realised block sparsity) for routes whose cost depends on the input."""
    spec = parse_route(route)
    if spec.name not in ROUTE_COSTS:
        raise ConfigError(f"the cost model has no entry for route {spec.name!r}")
    return ROUTE_COSTS.build(spec.name, spec, layout, dim, observed)


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
    """One frame through a DPT head (vggt.md §9): 112.9e9 MACs at 518x392 for VGGT-1B."""
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
