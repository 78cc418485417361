"""Attention capture: what chosen layers attend to, without a T x T matrix.

A forward hook on a block's `attn` module receives the block's LN1 output, position ids and layout,
and recomputes q and k with the module's own `qkv_heads` (q/k LayerNorm, RoPE), i.e. exactly the
tensors the layer's mixer gets. Their probabilities are then streamed for the selected queries into
small reducers (`analysis/attention_stats.py`), never as a T x T matrix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from avggt_bench.analysis.attention_stats import AUTO_ALL_QUERIES, LayerCapture, stream_layer
from avggt_bench.analysis.blocks import block_map
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.errors import ConfigError

AUTO_RANDOM_QUERIES = 4_096  # beyond it, a seeded random sample of this size
CAPTURABLE_ROUTES = ("global", "frame")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def select_queries(layout: TokenLayout, queries: Any = None, seed: int = 0) -> torch.Tensor:
    """Sorted token indices of the queries to analyse.

    `queries`: None/"auto" (all tokens up to 20,000, else 4,096 random), "all", an int n (n random
    tokens), explicit indices, or a mapping `{frames: [0, 3]}` (every token of those frames) or
    `{random: n, seed: s}`.
    """
    total = layout.num_tokens

    def sample(n: int, s: int) -> torch.Tensor:
        if n >= total:
            return torch.arange(total)
        gen = torch.Generator().manual_seed(int(s))
        return torch.randperm(total, generator=gen)[: int(n)].sort().values

    if queries is None or queries == "auto":
        return torch.arange(total) if total <= AUTO_ALL_QUERIES else sample(AUTO_RANDOM_QUERIES, 0)
    if queries == "all":
        return torch.arange(total)
    if isinstance(queries, bool):
        raise ConfigError(
            f"queries={queries!r}: give auto, all, a count, indices or {{frames: ..}}"
        )
    if isinstance(queries, int):
        if queries < 1:
            raise ConfigError(f"queries={queries}: a random query count must be >= 1")
        return sample(queries, seed)
    if isinstance(queries, Mapping):
        if "frames" in queries:
            frames = [int(f) for f in queries["frames"]]
            bad = [f for f in frames if not 0 <= f < layout.frames]
            if bad:
                raise ConfigError(f"query frames {bad} out of range 0..{layout.frames - 1}")
            per = layout.tokens_per_frame
            return torch.cat([torch.arange(f * per, (f + 1) * per) for f in sorted(set(frames))])
        if "random" in queries:
            return sample(int(queries["random"]), int(queries.get("seed", seed)))
        raise ConfigError(f"query mapping {dict(queries)!r} needs a 'frames' or 'random' key")
    if isinstance(queries, torch.Tensor | Sequence) and not isinstance(queries, str):
        idx = torch.as_tensor(list(queries) if not isinstance(queries, torch.Tensor) else queries)
        idx = idx.reshape(-1).long().unique()
        if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= total:
            raise ConfigError(f"query indices must lie in 0..{total - 1} (this scene's tokens)")
        return idx
    raise ConfigError(
        f"queries={queries!r}: give auto, all, a count, indices, {{frames: [..]}} or {{random: n}}"
    )


def scene_layout(model: nn.Module, images: torch.Tensor) -> TokenLayout:
    """The global token layout of `images` `[S, 3, H, W]` (or `[1, S, 3, H, W]`) in `model`."""
    if images.dim() == 5:
        if images.shape[0] != 1:
            raise ConfigError("the analysis takes one scene (batch 1); pass images [S, 3, H, W]")
        images = images[0]
    patch = int(getattr(getattr(model, "arch", None), "patch_size", 14))
    height, width = images.shape[-2:]
    return TokenLayout(
        frames=int(images.shape[0]),
        grid=(height // patch, width // patch),
        num_special=int(model.num_special),
        reference_frame=getattr(model, "family", None) == "vggt",
    )


def layer_route(model: nn.Module, kind: str, layer: int) -> str:
    """The route string of a layer (frame blocks are always `frame`)."""
    if kind == "frame":
        return "frame"
    return str(model.routes[layer])


class _Done(Exception):
    """Raised by the last capture hook to end the forward early (nothing later is needed)."""


@contextmanager
def attention_capture(
    model: nn.Module,
    layers: Sequence[int],
    layout: TokenLayout,
    queries: torch.Tensor,
    kind: str = "global",
    **options: Any,
) -> Iterator[dict[int, LayerCapture]]:
    """Register capture hooks on `layers` of `kind` for the duration of the block.

    The yielded dict fills with one LayerCapture per layer as the model's forward reaches it.
    Options are those of `stream_layer` (top_k, heads, query_chunk, key_chunk, dtype, dense).
    """
    blocks = block_map(model).blocks(kind)
    for g in layers:
        if not 0 <= g < len(blocks):
            raise ConfigError(f"{kind} layer {g} out of range: the model has {len(blocks)}")
        route = layer_route(model, kind, g)
        name = route.split("(")[0]
        if name not in CAPTURABLE_ROUTES:
            raise ConfigError(
                f"global layer {g} runs route {route!r}: capture reads the softmax of dense or "
                f"per-frame attention ({', '.join(CAPTURABLE_ROUTES)}); analyse it under "
                "attention=dense, or leave the layer out of analysis.layers"
            )
    out: dict[int, LayerCapture] = {}
    handles = []

    def make_hook(g: int):
        def hook(module, args, kwargs, _output):
            if g in out:
                raise RuntimeError(f"{kind} layer {g} attention ran twice in one forward")
            a = args[0] if args else kwargs["a"]
            pos = args[1] if len(args) > 1 else kwargs.get("pos")
            lay = args[2] if len(args) > 2 else kwargs.get("layout")
            q, k, _v, _ = module.qkv_heads(a, pos, lay)
            out[g] = stream_layer(
                q,
                k,
                layout,
                queries,
                layer=g,
                kind=kind,
                route=layer_route(model, kind, g),
                **options,
            )

        return hook

    try:
        for g in layers:
            handles.append(blocks[g].attn.register_forward_hook(make_hook(g), with_kwargs=True))
        yield out
    finally:
        for h in handles:
            h.remove()


def capture(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[int],
    queries: Any = None,
    *,
    kind: str = "global",
    heads: str = "mean",
    top_k: int = 50,
    query_chunk: int = 64,
    key_chunk: int = 65536,
    dtype: torch.dtype | str = torch.float32,
    dense: bool = False,
    cross_view_only: bool = False,
    seed: int = 0,
) -> dict[int, LayerCapture]:
    """Run `model` on one scene `images` `[S, 3, H, W]` and capture `layers`.

    The forward stops after the deepest captured layer. Returns layer -> LayerCapture.
    """
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ConfigError(f"capture dtype {dtype!r}; valid: {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    layers = sorted(set(int(g) for g in layers))
    layout = scene_layout(model, images)
    query_ids = select_queries(layout, queries, seed)
    options = dict(
        top_k=top_k,
        heads=heads,
        query_chunk=query_chunk,
        key_chunk=key_chunk,
        dtype=dtype,
        dense=dense,
        cross_view_only=cross_view_only,
    )
    with attention_capture(model, layers, layout, query_ids, kind, **options) as out:
        last = _stop_after(model, kind, layers[-1], out, len(layers))
        try:
            with torch.inference_mode():
                model(images)
        except _Done:
            pass
        finally:
            last.remove()
    missing = [g for g in layers if g not in out]
    if missing:
        raise RuntimeError(f"{kind} layers {missing} never ran their attention in the forward")
    return out


def _stop_after(model: nn.Module, kind: str, layer: int, out: dict, expected: int):
    """A hook on the deepest captured block that ends the forward once every layer is in."""
    block = block_map(model).blocks(kind)[layer]

    def hook(_module, _args, _output):
        if len(out) >= expected:
            raise _Done

    return block.register_forward_hook(hook)
