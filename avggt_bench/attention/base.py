"""The attention seam: what every token mixer receives and returns.

A transformer block computes q, k, v (after q/k-norm and RoPE, exactly what a dense kernel would
receive) and hands them to a *mixer* together with an `AttentionContext`. The mixer returns the
attended values `[batch, heads, n, d]`; the block then merges heads and applies `proj`. Dense
attention, AVGGT and the sparse baselines are mixers (or routes built on them); the model code never
branches on the variant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from avggt_bench.attention.kernels import sdpa
from avggt_bench.attention.layout import TokenLayout


@dataclass
class AttentionContext:
    """Everything besides q/k/v a mixer may need: the token layout, the block's LN1 output and,
    for mixers that set `needs_unrotated_keys`, the keys after q/k-norm but before RoPE."""

    layout: TokenLayout
    x: torch.Tensor | None = None
    k_unrotated: torch.Tensor | None = None


class Mixer(Protocol):
    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext
    ) -> torch.Tensor: ...


class DenseMixer:
    """Softmax attention over all keys through SDPA with the model's backend policy."""

    def __init__(self, policy: str = "default") -> None:
        self.policy = policy

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext
    ) -> torch.Tensor:
        return sdpa(q, k, v, self.policy)

    def __repr__(self) -> str:
        return f"DenseMixer(policy={self.policy!r})"
