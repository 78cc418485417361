"""What a frame-parallel job's record says: world size, frame split, each global layer's sharded
form, per-rank peak memory and bytes received per layer, measured and as the cost model predicts."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from avggt_bench.attention.layout import TokenLayout
from avggt_bench.parallel.shard import FrameParallel, split_frames


def predicted_bytes(
    routes: list,
    layout: TokenLayout,
    dim: int,
    world: int,
    rank: int,
    itemsize: int,
    batch: int = 1,
) -> dict[str, int]:
    """Bytes rank `rank` receives in each global layer, from the routes' `comm_bytes`."""
    split = split_frames(layout.frames, world, rank)
    return {
        f"global {i}": r.comm_bytes(layout, dim, split, itemsize, batch)
        for i, r in enumerate(routes)
    }


def parallel_facts(
    par: FrameParallel,
    model: torch.nn.Module,
    layout: TokenLayout,
    memory: dict[str, Any],
    dtype: torch.dtype,
    forward_s: float | None = None,
) -> dict[str, Any]:
    """The record's `parallel` section (collective: every rank must call it after the forward).
    With the forward's median time, each rank's received bytes per second over the whole forward:
    the link bandwidth the run used on average, to set beside the link's own."""
    mine = {
        "rank": par.rank,
        "peak_bytes": memory.get("peak_bytes"),
        "peak_gb": memory.get("peak_gb"),
        "memory_kind": memory.get("kind"),
        "bytes": dict(par.log.bytes),
    }
    ranks: list[Any] = [None] * par.world
    dist.all_gather_object(ranks, mine, group=par.group)
    dim = model.global_block(0).attn.qkv.in_features
    itemsize = torch.tensor([], dtype=dtype).element_size()
    split = split_frames(layout.frames, par.world)
    routes = list(model.routes)
    per_rank, match = [], True
    for r, facts in enumerate(ranks):
        predicted = predicted_bytes(routes, layout, dim, par.world, r, itemsize)
        measured = {k: facts["bytes"].get(k, 0) for k in predicted}
        match = match and measured == predicted
        others = {k: v for k, v in facts["bytes"].items() if k not in predicted}
        per_rank.append(
            {
                "rank": r,
                "frames": split.counts[r],
                "peak_bytes": facts["peak_bytes"],
                "peak_gb": facts["peak_gb"],
                "memory_kind": facts["memory_kind"],
                "bytes_per_layer": list(measured.values()),
                "bytes_per_layer_predicted": list(predicted.values()),
                "bytes_heads_and_outputs": others,
                "received_gb_per_s": (
                    sum(facts["bytes"].values()) / forward_s / 1e9 if forward_s else None
                ),
            }
        )
    return {
        "world_size": par.world,
        "backend": dist.get_backend(par.group),
        "frame_split": list(split.bounds),
        "layers": [
            {"layer": i, "route": str(r), "sharding": r.sharding} for i, r in enumerate(routes)
        ],
        "fallback_layers": [i for i, r in enumerate(routes) if r.sharding.startswith("fallback")],
        "per_rank": per_rank,
        "bytes_match_cost_model": match,
        "bytes_convention": "bytes each rank receives (avggt_bench/parallel/comm.py)",
    }
