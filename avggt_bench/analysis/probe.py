"""The 180° rotation probe: do a layer's hub keys follow the grid or the content?

The model runs on the original views and on the views rotated by 180° (all, or one). Patch (r, c)
of a rotated view shows the content of patch (h-1-r, w-1-c). The rotated run's queries are the
original queries mapped through the rotation, so both runs ask about the same content. Hubs are
the keys with the largest in-degree of top-1 edges. `grid_agreement` compares hub positions as
grid coordinates, `content_agreement` after mapping the rotated hubs back to content coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from avggt_bench.analysis.capture import capture, scene_layout, select_queries
from avggt_bench.analysis.pairs import decode_tokens
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.errors import ConfigError


def rotated_frames(frames: int, which: str | int = "all") -> list[int]:
    """Frames the probe rotates: every one ("all") or a single index."""
    if which == "all":
        return list(range(frames))
    if isinstance(which, bool) or not isinstance(which, int) or not 0 <= which < frames:
        raise ConfigError(f"probe.views={which!r}: use 'all' or a view index in 0..{frames - 1}")
    return [which]


def rotate_images(images: torch.Tensor, frames: Sequence[int]) -> torch.Tensor:
    """A copy of `images` `[S, 3, H, W]` with `frames` rotated by 180° (rot90, k=2, over H, W)."""
    out = images.clone()
    idx = torch.as_tensor(list(frames), dtype=torch.long)
    out[idx] = torch.rot90(images[idx], k=2, dims=(-2, -1))
    return out


def rotate_tokens(idx: torch.Tensor, layout: TokenLayout, frames: Sequence[int]) -> torch.Tensor:
    """Token indices mapped through the rotation: patch (r, c) of a rotated frame becomes
    (h-1-r, w-1-c); special tokens and unrotated frames stay. The map is its own inverse."""
    dec = decode_tokens(idx, layout)
    h, w = layout.grid
    rotated = torch.isin(dec["frame"], torch.as_tensor(list(frames), dtype=torch.long))
    move = rotated & ~dec["special"]
    slot = layout.num_special + (h - 1 - dec["row"]) * w + (w - 1 - dec["col"])
    new = dec["frame"] * layout.tokens_per_frame + slot
    return torch.where(move, new, idx)


def hub_keys(top1_key: torch.Tensor, n_hubs: int = 20) -> torch.Tensor:
    """The `n_hubs` keys with the most incoming top-1 edges (ties: lower index first)."""
    keys, counts = top1_key.unique(return_counts=True)  # keys ascending
    order = torch.sort(counts, descending=True, stable=True).indices
    return keys[order[:n_hubs]]


def _near(a: torch.Tensor, b: torch.Tensor, layout: TokenLayout, radius: int) -> torch.Tensor:
    """For each token in `a`, whether some token of `b` is in the same frame within `radius`
    patches (Chebyshev); special tokens match only themselves."""
    da, db = decode_tokens(a, layout), decode_tokens(b, layout)
    same_frame = da["frame"][:, None] == db["frame"][None, :]
    both_patch = ~da["special"][:, None] & ~db["special"][None, :]
    cheb = torch.maximum(
        (da["row"][:, None] - db["row"][None, :]).abs(),
        (da["col"][:, None] - db["col"][None, :]).abs(),
    )
    hit = same_frame & ((both_patch & (cheb <= radius)) | (a[:, None] == b[None, :]))
    return hit.any(dim=1)


def hub_agreement(
    hubs: torch.Tensor,
    hubs_rot: torch.Tensor,
    layout: TokenLayout,
    frames: Sequence[int],
    radius: int = 1,
) -> dict[str, float]:
    """Fractions of the rotated run's hubs that match an original hub in grid coordinates and
    in content coordinates (after mapping back through the rotation)."""
    if hubs_rot.numel() == 0:
        return {"grid_agreement": float("nan"), "content_agreement": float("nan")}
    grid = _near(hubs_rot, hubs, layout, radius).double().mean()
    content = _near(rotate_tokens(hubs_rot, layout, frames), hubs, layout, radius).double().mean()
    return {"grid_agreement": float(grid), "content_agreement": float(content)}


def rotation_probe(
    model: nn.Module,
    images: torch.Tensor,
    layers: Sequence[int],
    queries: Any = None,
    *,
    views: str | int = "all",
    n_hubs: int = 20,
    radius: int = 1,
    seed: int = 0,
    **capture_options: Any,
) -> pd.DataFrame:
    """Per layer: grid and content agreement of the hub keys of the two runs, and how many
    queries keep the same top-1 key in content coordinates."""
    layout = scene_layout(model, images)
    frames = rotated_frames(layout.frames, views)
    query_ids = select_queries(layout, queries, seed)
    original = capture(model, images, layers, query_ids, **capture_options)
    rot_queries = rotate_tokens(query_ids, layout, frames)
    rotated = capture(model, rotate_images(images, frames), layers, rot_queries, **capture_options)
    rows = []
    for g in sorted(original):
        a, b = original[g], rotated[g]
        # b.queries is sorted; align it with a.queries through the rotation
        order = torch.searchsorted(b.queries, rotate_tokens(a.queries, layout, frames))
        top1_b_content = rotate_tokens(b.top1_key[order], layout, frames)
        top1_b_grid = b.top1_key[order]
        hubs_a, hubs_b = hub_keys(a.top1_key, n_hubs), hub_keys(b.top1_key, n_hubs)
        rows.append(
            {
                "layer": g,
                "kind": a.kind,
                "route": a.route,
                "rotated_views": "all" if views == "all" else str(views),
                "n_hubs": int(hubs_b.numel()),
                **hub_agreement(hubs_a, hubs_b, layout, frames, radius),
                "top1_same_grid": float((top1_b_grid == a.top1_key).double().mean()),
                "top1_same_content": float((top1_b_content == a.top1_key).double().mean()),
            }
        )
    return pd.DataFrame(rows)
