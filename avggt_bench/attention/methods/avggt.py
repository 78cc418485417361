"""AVGGT's subsampled global attention route and its method.

Route `sga(...)` is subsampled global attention with diagonal and mean-fill; the early-layer
routes `frame` (G2F), `mean` (G2M) and `skip` are in methods/g2f.py. The `avggt` method turns
`t_early`, σ and the switches of `conf/attention/avggt.yaml` into one route string per global
layer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from avggt_bench.attention.base import AttentionContext
from avggt_bench.attention.config import (
    BARE_ROUTES,
    METHODS,
    ROUTE_DEFAULTS,
    SWITCH_RESOLVERS,
    parse_layers,
)
from avggt_bench.attention.cost import GlobalLayerCost, attention_core_macs, linear_macs
from avggt_bench.attention.kernels import sdpa
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import (
    ROUTES,
    Route,
    RouteSpec,
    build_route,
    softmax_attention,
)
from avggt_bench.attention.sga import SGAMixer, SGAOptions, build_kept_set, kept_set
from avggt_bench.errors import ConfigError
from avggt_bench.timing import random_qkv, time_repeats

T_EARLY = {"vggt": 9, "pi3": 10}  # the AVGGT paper's values
KEEP_FIRST_FRAME = {"vggt": True, "pi3": False}  # π³ has no reference frame


@ROUTES.register("sga", "subsampled global attention with diagonal and mean-fill")
class SGARoute(Route):
    name = "sga"

    def __init__(self, spec: RouteSpec, policy: str = "default") -> None:
        super().__init__(spec)
        self.options = SGAOptions.from_params(spec.params)
        self.mixer = SGAMixer(self.options, policy)

    def run(self, block: nn.Module, x, pos, layout: TokenLayout) -> torch.Tensor:
        return block(x, pos, layout, self.mixer)

    sharding: ClassVar[str] = (
        "all-gather of the kept K/V, one all-reduce of the mean-fill sums and counts "
        "(ring attention when nothing is dropped)"
    )

    def run_sharded(self, block: nn.Module, x, pos, layout: TokenLayout, shard) -> torch.Tensor:
        mixer = SGAMixer(self.options, self.mixer.policy, shard)
        out = block(x, pos, layout, mixer)
        self.mixer.last_backend = mixer.last_backend
        return out

    def comm_bytes(
        self, layout: TokenLayout, dim: int, split, itemsize: int, batch: int = 1
    ) -> int:
        """Kept K and V padded to the largest rank's kept count, from R - 1 ranks; the packed
        sums and counts of the mean-fill columns (accumulation dtype) from R - 1 ranks."""
        ks = kept_set(layout, self.options)
        t, per = layout.num_tokens, layout.tokens_per_frame
        if ks.num_kept == t and ks.num_dropped == 0:
            return 2 * batch * (split.total - split.count) * per * dim * itemsize
        kept = ks.kept.view(layout.frames, per)
        most = max(int(kept[a:b].sum()) for a, b in zip(split.bounds[:-1], split.bounds[1:]))
        total = (split.world - 1) * 2 * batch * most * dim * itemsize
        if self.options.mean and ks.mean_mask.any():
            columns = 1 if self.options.mean_scope == "global" else layout.frames
            acc = max(itemsize, 4)
            total += (split.world - 1) * (2 * batch * columns * dim + columns) * acc
        return total

    def sharded_workspace_bytes(
        self, layout: TokenLayout, dim: int, split, itemsize: int, batch: int = 1
    ) -> int:
        """The all-gathered kept K/V (the padded parts and their concatenation) and the fp32
        merge output; ring attention's when nothing is dropped."""
        ks = kept_set(layout, self.options)
        per = layout.tokens_per_frame
        if ks.num_kept == layout.num_tokens and ks.num_dropped == 0:
            return build_route("global").sharded_workspace_bytes(
                layout, dim, split, itemsize, batch
            )
        kept = ks.kept.view(layout.frames, per)
        most = max(int(kept[a:b].sum()) for a, b in zip(split.bounds[:-1], split.bounds[1:]))
        gathered = 2 * 2 * split.world * most * dim * itemsize
        return batch * (gathered + split.count * per * dim * max(itemsize, 4))

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

    def cost(self, layout: TokenLayout, dim: int, observed: dict | None = None) -> GlobalLayerCost:
        opts = self.options
        ks = kept_set(layout, opts)
        t = layout.num_tokens
        if ks.num_kept == t and ks.num_dropped == 0:
            return GlobalLayerCost(
                str(self.spec), linear_macs(t, dim), attention_core_macs(t, t, dim)
            )
        columns = 0
        if opts.mean and ks.mean_mask.any():
            columns = int(ks.mean_mask.any(1).sum()) if opts.mean_scope == "per_frame" else 1
        extra = (2 * t * dim if opts.diag else 0) + (
            2 * int(ks.mean_mask.sum()) * dim if columns else 0
        )
        return GlobalLayerCost(
            str(self.spec),
            linear_macs(t, dim),
            attention_core_macs(t, ks.num_kept + columns, dim),
            extra,
            {"kept": ks.num_kept, "dropped": ks.num_dropped, "mean_columns": columns},
        )

    def reference(self, q, k, v, ctx: AttentionContext) -> torch.Tensor:
        return sga_reference(q, k, v, ctx.layout, self.options, ctx.k_unrotated)

    def microbenchmark(
        self, layout, heads, head_dim, device, dtype, warmup: int = 1, repeats: int = 3
    ) -> dict[str, Any] | None:
        """The SGA mixer (gather + fused kernel + means + diagonal + merge) against a plain fused
        attention over the same, already gathered, kept K/V: the diagonal and mean-fill are meant
        to be cheap, so the ratio should stay close to 1 (the target is at most 1.2)."""
        if self.describe(layout)["path"] != "sga":
            return None
        q, k, v = random_qkv(layout.num_tokens, heads, head_dim, device, dtype)
        ks = kept_set(layout, self.options, device)
        k_kept, v_kept = k[:, :, ks.idx].contiguous(), v[:, :, ks.idx].contiguous()
        ctx = AttentionContext(layout=layout, k_unrotated=k)
        with torch.inference_mode():
            _, sga, _ = time_repeats(lambda: self.mixer(q, k, v, ctx), device, warmup, repeats)
            _, plain, _ = time_repeats(lambda: sdpa(q, k_kept, v_kept), device, warmup, repeats)
        ratio = sga.median_s / plain.median_s
        return {
            "route": str(self),
            "tokens": layout.num_tokens,
            "kept": ks.num_kept,
            "sga_s": sga.median_s,
            "kernel_only_s": plain.median_s,
            "overhead_ratio": ratio,
            "kernel": self.mixer.last_backend,
            "columns": {"SGA layer / kernel": ratio},
        }


def sga_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: TokenLayout,
    opts: SGAOptions,
    k_unrotated: torch.Tensor | None = None,
) -> torch.Tensor:
    """Enhanced SGA for q, k, v `[B, H, T, d]` by explicit per-query key lists (tests only).

    For every query its key list is built explicitly: the kept set in index order, then the query
    itself when its own key was dropped (diagonal), then the mean column(s), repeated |dropped|
    times when the log-count bias is on; one plain softmax in the input dtype (use float64).
    O(T·|kept|) memory.
    """
    sets = build_kept_set(layout, opts)
    kept, dropped = sets.kept.tolist(), sets.dropped
    tokens = q.shape[2]
    if all(kept) and not dropped.any():
        return softmax_attention(q, k, v)
    per_frame = layout.tokens_per_frame
    mean_mask = sets.mean_mask.reshape(-1)
    mean_keys = k_unrotated if opts.mean_key_space == "pre_rope" else k
    frames = range(layout.frames) if opts.mean_scope == "per_frame" else [None]
    kept_idx = [t for t in range(tokens) if kept[t]]
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = torch.empty_like(q)
    for i in range(tokens):
        keys, values = [k[:, :, kept_idx]], [v[:, :, kept_idx]]
        if opts.diag and (not kept[i] or opts.diag_for_kept_queries):
            keys.append(k[:, :, i : i + 1])
            values.append(v[:, :, i : i + 1])
        if opts.mean:
            for f in frames:
                members = [
                    t
                    for t in range(tokens)
                    if mean_mask[t]
                    and (f is None or t // per_frame == f)
                    and not (opts.mean_exclude_self and t == i)
                ]
                if not members:
                    continue
                k_bar = mean_keys[:, :, members].mean(2, keepdim=True)
                v_bar = v[:, :, members].mean(2, keepdim=True)
                copies = len(members) if opts.mean_log_count_bias else 1
                keys.append(k_bar.expand(-1, -1, copies, -1))
                values.append(v_bar.expand(-1, -1, copies, -1))
        key_list, value_list = torch.cat(keys, dim=2), torch.cat(values, dim=2)
        scores = (q[:, :, i : i + 1] @ key_list.transpose(-1, -2)) * scale
        out[:, :, i : i + 1] = torch.softmax(scores, dim=-1) @ value_list
    return out


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
