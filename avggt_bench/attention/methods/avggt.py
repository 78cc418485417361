"""AVGGT's routes and method: global-to-frame (G2F), G2M, skip and subsampled global attention.

Routes: `frame` runs the global block on each frame alone; `mean` (G2M) gives every
query the mean value; `skip` bypasses the block (or only its attention); `sga(...)` is subsampled
global attention with diagonal and mean-fill. The `avggt` method turns `t_early`, σ and the switches
of `conf/attention/avggt.yaml` into one route string per global layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from avggt_bench.attention.base import AttentionContext, DenseMixer
from avggt_bench.attention.config import (
    BARE_ROUTES,
    METHODS,
    ROUTE_DEFAULTS,
    SWITCH_RESOLVERS,
    parse_layers,
)
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import ROUTES, Route, RouteSpec
from avggt_bench.attention.sga import SGAMixer, SGAOptions, kept_set
from avggt_bench.errors import ConfigError

T_EARLY = {"vggt": 9, "pi3": 10}  # the AVGGT paper's values
KEEP_FIRST_FRAME = {"vggt": True, "pi3": False}  # π³ has no reference frame


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
class FrameRoute(Route):
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


@ROUTES.register("skip", "the global block is bypassed (part=block) or only its attention")
class SkipRoute(Route):
    name = "skip"

    def __init__(self, spec: RouteSpec, policy: str = "default") -> None:
        params = _check_params(spec, {"part": ("block", "attention")})
        super().__init__(spec)
        self.part = params.get("part", "block")

    def run(self, block: nn.Module, x, pos, layout: TokenLayout) -> torch.Tensor:
        if self.part == "block":
            return x
        return x + block.mlp_branch(x)


@ROUTES.register("sga", "subsampled global attention with diagonal and mean-fill")
class SGARoute(Route):
    name = "sga"

    def __init__(self, spec: RouteSpec, policy: str = "default") -> None:
        super().__init__(spec)
        self.options = SGAOptions.from_params(spec.params)
        self.mixer = SGAMixer(self.options, policy)

    def run(self, block: nn.Module, x, pos, layout: TokenLayout) -> torch.Tensor:
        return block(x, pos, layout, self.mixer)

    def describe(self, layout: TokenLayout) -> dict[str, Any]:
        ks = kept_set(layout, self.options)
        dense = ks.num_kept == ks.num_tokens and ks.num_dropped == 0
        return {
            "tokens": ks.num_tokens,
            "kept": ks.num_kept,
            "dropped": ks.num_dropped,
            "mean_columns": 0
            if not self.options.mean or dense
            else _mean_columns(ks, self.options),
            "path": "dense (nothing dropped)" if dense else "sga",
            "kernel": self.mixer.last_backend,
        }


def _mean_columns(ks, opts: SGAOptions) -> int:
    if opts.mean_scope == "global":
        return int(ks.mean_mask.any())
    return int(ks.mean_mask.any(1).sum())


SGA_SWITCHES = (
    "stride",
    "grid_anchor",
    "grid_phase",
    "keep_special",
    "diag_for_kept_queries",
    "mean_scope",
    "mean_over",
    "mean_key_space",
    "mean_log_count_bias",
    "mean_exclude_self",
    "mean_path",
    "kernel",
)


def resolve_switches(cfg: Mapping[str, Any], family: str, num_layers: int) -> dict[str, Any]:
    """The config with every `auto` replaced by its value for this model family."""
    out = dict(cfg)
    if out.get("t_early", "auto") == "auto":
        out["t_early"] = T_EARLY.get(family, 0)
    if out.get("keep_first_frame", "auto") == "auto":
        out["keep_first_frame"] = keep_first_frame(family)
    unit = out.get("t_early_unit", "global_layer")
    if unit not in ("global_layer", "decoder_block"):
        raise ConfigError(f"t_early_unit={unit!r}; valid: global_layer, decoder_block")
    if unit == "decoder_block" and family != "pi3":
        raise ConfigError("t_early_unit=decoder_block applies to π³ only (VGGT has no decoder)")
    t_early = int(out["t_early"])
    limit = 2 * num_layers if unit == "decoder_block" else num_layers
    if not 0 <= t_early <= limit:
        raise ConfigError(
            f"t_early={t_early} is beyond this {family} model: valid 0..{limit} "
            f"({'decoder blocks' if unit == 'decoder_block' else 'global layers'})"
        )
    return out


def sga_options(cfg: Mapping[str, Any], enhanced: bool) -> SGAOptions:
    """The SGA options of one layer from the method config."""
    values = {k: cfg[k] for k in SGA_SWITCHES if k in cfg and cfg[k] is not None}
    return SGAOptions.from_params(
        {
            "sigma": int(cfg.get("sigma", 9)),
            "diag": bool(cfg.get("diag", True)) and enhanced,
            "mean": bool(cfg.get("mean_fill", True)) and enhanced,
            "keep_first_frame": bool(cfg["keep_first_frame"]),
            **values,
        }
    )


def default_route(name: str, cfg: Mapping[str, Any]) -> str:
    """A bare route name with the config's switches for that route (overrides use this)."""
    if name == "mean":
        params = {}
        if cfg.get("g2m_scope", "global") != "global":
            params["scope"] = cfg["g2m_scope"]
        if cfg.get("g2m_include_special", False):
            params["include_special"] = 1
        return str(RouteSpec("mean", params))
    if name == "skip":
        part = cfg.get("skip_part", "block")
        return "skip" if part == "block" else f"skip(part={part})"
    if name == "sga":
        return str(RouteSpec("sga", sga_options(cfg, enhanced=True).route_params()))
    return name


@METHODS.register("avggt", "G2F on layers < t_early, SGA (diag + mean-fill) on the rest")
def avggt_routes(cfg: Mapping[str, Any], family: str, num_layers: int) -> list[str]:
    cfg = resolve_switches(cfg, family, num_layers)
    t_early = int(cfg["t_early"])
    if cfg.get("t_early_unit", "global_layer") == "decoder_block":
        t_early = t_early // 2  # global layer g is decoder block 2g + 1
    early = default_route(cfg.get("early_route", "frame"), cfg)
    routes = [early if g < t_early else "global" for g in range(num_layers)]
    sga_layers = cfg.get("sga_layers", "from_t_early")
    if sga_layers == "from_t_early":
        sga_layers = list(range(t_early, num_layers))
    else:
        sga_layers = parse_layers(sga_layers, num_layers) if sga_layers not in (None, []) else []
    enhanced = cfg.get("enhanced_layers", "all_sga")
    enhanced = set(sga_layers if enhanced == "all_sga" else parse_layers(enhanced, num_layers))
    for g in sga_layers:
        routes[g] = str(RouteSpec("sga", sga_options(cfg, g in enhanced).route_params()))
    return routes


def keep_first_frame(family: str) -> bool:
    """`keep_first_frame: auto`: keep the first frame's tokens for VGGT, whose first frame is the
    reference frame of its camera and point outputs; not for π³, which has no reference frame."""
    if family not in KEEP_FIRST_FRAME:
        raise ConfigError(
            f"keep_first_frame: auto is defined for {', '.join(KEEP_FIRST_FRAME)}, not for "
            f"{family!r}; set keep_first_frame to true or false"
        )
    return KEEP_FIRST_FRAME[family]


def resolve_switches_any(cfg: Mapping[str, Any], family: str) -> dict[str, Any]:
    """Switches for bare routes in any method: `auto` keep_first_frame resolved per family."""
    out = dict(cfg)
    if out.get("keep_first_frame", "auto") == "auto":
        out["keep_first_frame"] = keep_first_frame(family)
    return out


def _sga_defaults(params: dict[str, Any], family: str) -> dict[str, Any]:
    """An `sga(...)` route string without keep_first_frame (or with `auto`) gets the family's."""
    if params.get("keep_first_frame", "auto") == "auto":
        params["keep_first_frame"] = keep_first_frame(family)
    return params


SWITCH_RESOLVERS["avggt"] = resolve_switches
ROUTE_DEFAULTS["sga"] = _sga_defaults
for _name in ("mean", "skip", "sga"):
    BARE_ROUTES[_name] = lambda cfg, family, name=_name: default_route(
        name, resolve_switches_any(cfg, family)
    )
