"""MAC helpers and the per-layer cost type every route's `cost` returns.

Conventions: one MAC per multiply-add of a matmul or convolution; softmax, LayerNorm, RoPE, GELU and
reductions are not counted. Kept apart from `avggt_bench.flops` (the model-level sum) so that the
route modules can import it: the cost model asks each route for its layer's cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    """Cost of one global layer under its route: linear layers, the attention core, anything
    else the route adds (`extra`), and the route's facts behind the count (`info`)."""

    route: str
    linear: int
    attention: int
    extra: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.linear + self.attention + self.extra
