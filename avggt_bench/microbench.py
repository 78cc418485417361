"""Micro-benchmarks of single attention layers, recorded beside the end-to-end timings.

`sga_overhead` times one SGA layer (gather + fused kernel + means + diagonal + merge) against a
plain fused attention over the same, already gathered, kept K/V: the diagonal and mean-fill are
meant to be cheap, so the ratio should stay close to 1 (the target is at most 1.2).
"""

from __future__ import annotations

from typing import Any

import torch

from avggt_bench.attention.base import AttentionContext
from avggt_bench.attention.kernels import sdpa
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.sga import kept_set
from avggt_bench.timing import time_repeats


def random_qkv(
    layout: TokenLayout, heads: int, head_dim: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded random q, k, v `[1, heads, tokens, head_dim]` for one layer of `layout`."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    shape = (1, heads, layout.num_tokens, head_dim)
    q, k, v = (torch.randn(shape, generator=gen).to(device=device, dtype=dtype) for _ in range(3))
    return q, k, v


def sga_overhead(
    route,
    layout: TokenLayout,
    heads: int,
    head_dim: int,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int = 1,
    repeats: int = 3,
) -> dict[str, Any]:
    """Median time of the SGA mixer and of SDPA over the same kept K/V, on random q/k/v."""
    q, k, v = random_qkv(layout, heads, head_dim, device, dtype)
    ks = kept_set(layout, route.options, device)
    k_kept, v_kept = k[:, :, ks.idx].contiguous(), v[:, :, ks.idx].contiguous()
    ctx = AttentionContext(layout=layout, k_unrotated=k)
    with torch.inference_mode():
        _, sga, _ = time_repeats(lambda: route.mixer(q, k, v, ctx), device, warmup, repeats)
        _, plain, _ = time_repeats(lambda: sdpa(q, k_kept, v_kept), device, warmup, repeats)
    return {
        "route": str(route),
        "tokens": layout.num_tokens,
        "kept": ks.num_kept,
        "sga_s": sga.median_s,
        "kernel_only_s": plain.median_s,
        "overhead_ratio": sga.median_s / plain.median_s,
        "kernel": route.mixer.last_backend,
    }


def block_sparse_kernels(
    route,
    layout: TokenLayout,
    heads: int,
    head_dim: int,
    device: torch.device,
    dtype: torch.dtype,
    warmup: int = 1,
    repeats: int = 3,
) -> dict[str, Any]:
    """One block-sparse layer three ways: the sparse selection through its kernel, every block
    selected through the same kernel, and dense SDPA (the parent's kernel), so that the gain of
    the sparsity is reported apart from the speed of the kernel."""
    q, k, v = random_qkv(layout, heads, head_dim, device, dtype)
    ctx = AttentionContext(layout=layout)
    mixer = route.mixer
    with torch.inference_mode():
        _, sparse, _ = time_repeats(lambda: mixer(q, k, v, ctx), device, warmup, repeats)
        realised = dict(mixer.last)
        mixer.force_dense_blocks = True
        try:
            _, same, _ = time_repeats(lambda: mixer(q, k, v, ctx), device, warmup, repeats)
        finally:
            mixer.force_dense_blocks = False
        _, dense, _ = time_repeats(lambda: sdpa(q, k, v), device, warmup, repeats)
    return {
        "route": str(route),
        "tokens": layout.num_tokens,
        "kernel": realised.get("kernel"),
        "random_input_sparsity": realised.get("sparsity"),
        "sparse_s": sparse.median_s,
        "dense_same_kernel_s": same.median_s,
        "dense_sdpa_s": dense.median_s,
        "sparsity_speedup": same.median_s / sparse.median_s,
        "end_to_end_speedup": dense.median_s / sparse.median_s,
    }
