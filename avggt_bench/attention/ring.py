"""Ring attention: dense global attention over frame-sharded tokens with O(N/R) memory per rank.

Each rank keeps its queries and passes its K/V block around the ring of ranks; at every step it
attends to the block it holds (`attn_lse`) and merges the result into a running output with the
log-sum-exp (`merge_lse`), while the next block is already in flight. After R steps every query has
seen every key: the same softmax as the single-process dense layer, up to summation order
(Liu et al., "Ring Attention with Blockwise Transformers", arXiv 2310.01889).
"""

from __future__ import annotations

import torch

from avggt_bench.attention.base import AttentionContext
from avggt_bench.attention.lse import attn_lse, merge_lse
from avggt_bench.parallel.comm import RingExchange
from avggt_bench.parallel.shard import Shard


class RingMixer:
    """Dense attention of this rank's queries over every rank's keys (route `global`, sharded)."""

    def __init__(self, shard: Shard, kernel: str = "auto") -> None:
        self.shard = shard
        self.kernel = kernel

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext
    ) -> torch.Tensor:
        split, par = self.shard.split, self.shard.parallel
        per = ctx.layout.tokens_per_frame
        world, rank = split.world, split.rank
        kv = torch.stack((k, v))  # one message per step: [2, B, H, T_r, d]
        out = lse = None
        for step in range(world):
            exchange = None
            if step < world - 1:
                src = (rank - step - 1) % world  # the block that arrives for the next step
                shape = (*kv.shape[:3], split.counts[src] * per, kv.shape[-1])
                exchange = RingExchange(kv, shape, rank, world, par.log, par.group)
            part, part_lse, _ = attn_lse(q, kv[0], kv[1], self.kernel)
            out, lse = merge_lse(out, lse, part, part_lse)
            if exchange is not None:
                kv = exchange.wait()
        return out.to(q.dtype)
