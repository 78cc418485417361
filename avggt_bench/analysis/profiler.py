"""Per-block profiler: where the forward time goes, block by block.

Forward pre/post hooks time the patch embedding, the attention and MLP of every frame and global
block, and each head (CUDA: synchronise, then `perf_counter`; CPU: `perf_counter`). Each region is
also a `torch.profiler.record_function` range (`enc`, `frame[i].attn`, `global[g].mlp`, `head.x`)
for trace viewers. Time outside the hooked regions (norms, residual adds, token layout, a route
that bypasses `attn`, e.g. global-scope `mean`) is reported as `unattributed`. The hooks add
synchronisation, so these times never replace the timed benchmark runs.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import pandas as pd
import torch
from torch import nn

from avggt_bench.analysis.blocks import block_map
from avggt_bench.progress import progress
from avggt_bench.timing import synchronize

CATEGORIES = ("patch_embed", "frame_attn", "global_attn", "mlp", "heads", "unattributed")


def _regions(model: nn.Module) -> list[tuple[str, str, int, nn.Module]]:
    """(label, category, layer, module) of every timed region."""
    blocks = block_map(model)
    regions = [("enc", "patch_embed", -1, blocks.patch_embed)]
    for kind, seq in (("frame", blocks.frame), ("global", blocks.global_)):
        for i, block in enumerate(seq):
            regions.append((f"{kind}[{i}].attn", f"{kind}_attn", i, block.attn))
            regions.append((f"{kind}[{i}].mlp", "mlp", i, block.mlp))
    for name, head in blocks.heads.items():
        regions.append((f"head.{name}", "heads", -1, head))
    return regions


@contextmanager
def block_timers(model: nn.Module, device: torch.device) -> Iterator[dict[str, list[float]]]:
    """Hooks that append each region's wall time (s) to `times[label]` while active."""
    times: dict[str, list[float]] = defaultdict(list)
    handles = []
    started: dict[str, tuple[float, torch.profiler.record_function]] = {}

    def pre(label: str) -> Callable:
        def hook(_module, _args):
            synchronize(device)
            rf = torch.profiler.record_function(label)
            rf.__enter__()
            started[label] = (time.perf_counter(), rf)

        return hook

    def post(label: str) -> Callable:
        def hook(_module, _args, _output):
            synchronize(device)
            t0, rf = started.pop(label)
            times[label].append(time.perf_counter() - t0)
            rf.__exit__(None, None, None)

        return hook

    try:
        for label, _cat, _layer, module in _regions(model):
            handles.append(module.register_forward_pre_hook(pre(label)))
            handles.append(module.register_forward_hook(post(label)))
        yield times
    finally:
        for h in handles:
            h.remove()


def profile_forward(
    model: nn.Module, images: torch.Tensor, warmup: int = 1, repeats: int = 2
) -> pd.DataFrame:
    """One row per region (label, category, layer) with the median time over `repeats`, plus an
    `unattributed` row (median forward time minus the sum of the regions) and a `forward` total."""
    device = images.device
    with torch.inference_mode():
        for _ in range(warmup):
            model(images)
        per_run: list[dict[str, float]] = []
        totals: list[float] = []
        for _ in range(max(repeats, 1)):
            with block_timers(model, device) as times:
                synchronize(device)
                t0 = time.perf_counter()
                model(images)
                synchronize(device)
                totals.append(time.perf_counter() - t0)
            per_run.append({k: sum(v) for k, v in times.items()})
    rows = []
    for label, category, layer, _m in _regions(model):
        samples = [run.get(label, 0.0) for run in per_run]
        if not any(label in run for run in per_run):
            continue
        rows.append(
            {
                "region": label,
                "category": category,
                "layer": layer,
                "time_s": statistics.median(samples),
            }
        )
    total = statistics.median(totals)
    attributed = sum(r["time_s"] for r in rows)
    rows.append(
        {
            "region": "unattributed",
            "category": "unattributed",
            "layer": -1,
            "time_s": max(total - attributed, 0.0),
        }
    )
    df = pd.DataFrame(rows)
    df["forward_s"] = total
    return df


def profile_views(
    model: nn.Module,
    make_images: Callable[[int], torch.Tensor],
    views: Sequence[int],
    warmup: int = 1,
    repeats: int = 2,
) -> pd.DataFrame:
    """`profile_forward` for each view count; `make_images(n)` returns the `[n, 3, H, W]` input."""
    frames = []
    for n in progress(list(views), desc="profiling view counts", unit="count"):
        df = profile_forward(model, make_images(int(n)), warmup, repeats)
        df.insert(0, "views", int(n))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def category_table(profile: pd.DataFrame) -> pd.DataFrame:
    """Seconds per (views, category), one column per category, plus forward time and the share
    of global attention."""
    wide = profile.pivot_table(
        index="views", columns="category", values="time_s", aggfunc="sum", fill_value=0.0
    )
    wide = wide.reindex(columns=[c for c in CATEGORIES if c in wide.columns])
    wide["forward_s"] = profile.groupby("views")["forward_s"].first()
    if "global_attn" in wide:
        wide["global_attn_share"] = wide["global_attn"] / wide["forward_s"]
    return wide.reset_index()
