"""Streamed attention statistics of one layer from its q and k, without a T x T matrix.

Probabilities are streamed for the selected queries in two passes over key chunks (log-sum-exp,
then p = exp(s - lse)) into small reducers: the k largest head-averaged (query, key)
probabilities, each query's top-1 key, entropies and peaks. The largest intermediate is one
`[heads, query_chunk, key_chunk]` score block. `analysis/capture.py` hooks the model to get q, k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avggt_bench.attention.layout import TokenLayout
from avggt_bench.errors import ConfigError

AUTO_ALL_QUERIES = 20_000  # up to this many tokens every token is a query


@dataclass
class LayerCapture:
    """Streamed statistics of one layer for the selected queries (token indices `queries`).

    Head-averaged: `top_values/top_queries/top_keys` (the k largest pairs, descending),
    `top1_key/top1_prob`, `entropy_of_mean` and `peak` per query. Per head, averaged over heads:
    `entropy` (H_i = lse_i - sum_j p_ij s_ij). `num_keys[i]`: keys query i sees (for normalising
    entropies). With heads="all": `head_*` per head. `dense` `[Q, T]` only on request.
    """

    layer: int
    kind: str
    route: str
    layout: TokenLayout
    queries: torch.Tensor
    num_keys: torch.Tensor
    top_values: torch.Tensor
    top_queries: torch.Tensor
    top_keys: torch.Tensor
    top1_key: torch.Tensor
    top1_prob: torch.Tensor
    entropy: torch.Tensor
    entropy_of_mean: torch.Tensor
    peak: torch.Tensor
    head_entropy: torch.Tensor | None = None
    head_peak: torch.Tensor | None = None
    head_top_values: torch.Tensor | None = None
    head_top_queries: torch.Tensor | None = None
    head_top_keys: torch.Tensor | None = None
    dense: torch.Tensor | None = None
    largest_block: int = 0  # elements of the largest score block materialised


class _Reducer:
    """Running reductions over probability blocks `[heads, rows, keys]` of one layer."""

    def __init__(
        self,
        queries: torch.Tensor,
        heads: int,
        top_k: int,
        all_heads: bool,
        dense_tokens: int,
        cross_view: int = 0,
    ) -> None:
        n = queries.numel()
        # tokens per frame when only cross-view pairs may enter the top-k (0: all pairs)
        self.cross_view = cross_view
        self.queries, self.top_k, self.all_heads = queries, top_k, all_heads
        self.top_v = torch.empty(0, dtype=torch.float64)
        self.top_q = torch.empty(0, dtype=torch.long)
        self.top_kid = torch.empty(0, dtype=torch.long)
        self.top1_p = torch.full((n,), -1.0, dtype=torch.float64)
        self.top1_key = torch.full((n,), -1, dtype=torch.long)
        self.ent_mean = torch.zeros(n, dtype=torch.float64)
        self.ent_heads = torch.zeros(heads, n, dtype=torch.float64)
        self.peak_heads = torch.zeros(heads, n, dtype=torch.float64)
        self.num_keys = torch.zeros(n, dtype=torch.long)
        self.h_v = torch.empty(heads, 0, dtype=torch.float64)
        self.h_q = torch.empty(heads, 0, dtype=torch.long)
        self.h_k = torch.empty(heads, 0, dtype=torch.long)
        self.dense = torch.zeros(n, dense_tokens, dtype=torch.float64) if dense_tokens else None
        self.largest = 0

    @staticmethod
    def _merge(values, rows, keys, new_v, new_r, new_k, k):
        v = torch.cat((values, new_v.double()), dim=-1)
        r = torch.cat((rows, new_r), dim=-1)
        kk = torch.cat((keys, new_k), dim=-1)
        top = v.topk(min(k, v.shape[-1]), dim=-1)
        return top.values, r.gather(-1, top.indices), kk.gather(-1, top.indices)

    def update(self, rows: torch.Tensor, key_ids: torch.Tensor, p: torch.Tensor) -> None:
        """Fold one block of probabilities `p` `[H, len(rows), len(key_ids)]` in."""
        pm = p.mean(0)
        if self.dense is not None:
            self.dense[rows[:, None], key_ids[None, :]] = pm.double()
        self.ent_mean[rows] -= torch.special.xlogy(pm, pm).sum(-1).double()
        best, arg = pm.max(-1)
        better = best.double() > self.top1_p[rows]
        self.top1_p[rows] = torch.where(better, best.double(), self.top1_p[rows])
        self.top1_key[rows] = torch.where(better, key_ids[arg], self.top1_key[rows])
        n_keys = key_ids.numel()
        if self.cross_view:
            same = (self.queries[rows] // self.cross_view)[:, None] == key_ids // self.cross_view
            pm = pm.masked_fill(same, -1.0)
            p = p.masked_fill(same, -1.0)
        flat = pm.reshape(-1)
        top = flat.topk(min(self.top_k, flat.numel()))
        self.top_v, self.top_q, self.top_kid = self._merge(
            self.top_v,
            self.top_q,
            self.top_kid,
            top.values,
            rows[top.indices // n_keys],
            key_ids[top.indices % n_keys],
            self.top_k,
        )
        if self.all_heads:
            flat_h = p.reshape(p.shape[0], -1)
            top_h = flat_h.topk(min(self.top_k, flat_h.shape[1]), dim=-1)
            self.h_v, self.h_q, self.h_k = self._merge(
                self.h_v,
                self.h_q,
                self.h_k,
                top_h.values,
                rows[top_h.indices // n_keys],
                key_ids[top_h.indices % n_keys],
                self.top_k,
            )

    def process(
        self,
        q: torch.Tensor,
        rows: torch.Tensor,
        k: torch.Tensor,
        key_ids: torch.Tensor,
        query_chunk: int,
        key_chunk: int,
        dtype: torch.dtype,
    ) -> None:
        """Queries `q` `[H, n, d]` (at `rows` of the query list) over keys `k` `[H, m, d]`."""
        scale = q.shape[-1] ** -0.5
        m = k.shape[1]
        for a in range(0, q.shape[1], query_chunk):
            qb = q[:, a : a + query_chunk].to(dtype) * scale
            rb = rows[a : a + query_chunk]
            lse = torch.full(qb.shape[:2], float("-inf"), dtype=dtype)
            for b in range(0, m, key_chunk):
                s = qb @ k[:, b : b + key_chunk].to(dtype).transpose(-1, -2)
                self.largest = max(self.largest, s.numel())
                lse = torch.logaddexp(lse, torch.logsumexp(s, dim=-1))
            sum_ps = torch.zeros_like(lse)
            peak = torch.zeros_like(lse)
            for b in range(0, m, key_chunk):
                s = qb @ k[:, b : b + key_chunk].to(dtype).transpose(-1, -2)
                p = torch.exp(s - lse[..., None])
                sum_ps += (p * s).sum(-1)
                peak = torch.maximum(peak, p.amax(-1))
                self.update(rb, key_ids[b : b + key_chunk], p)
            self.ent_heads[:, rb] = (lse - sum_ps).double()
            self.peak_heads[:, rb] = peak.double()
            self.num_keys[rb] = m

    def result(self, layer: int, kind: str, route: str, layout: TokenLayout) -> LayerCapture:
        q = self.queries
        keep = self.top_v >= 0  # masked (same-frame) candidates carry -1
        self.top_v, self.top_q, self.top_kid = (
            self.top_v[keep],
            self.top_q[keep],
            self.top_kid[keep],
        )
        return LayerCapture(
            layer=layer,
            kind=kind,
            route=route,
            layout=layout,
            queries=q,
            num_keys=self.num_keys,
            top_values=self.top_v,
            top_queries=q[self.top_q],
            top_keys=self.top_kid,
            top1_key=self.top1_key,
            top1_prob=self.top1_p,
            entropy=self.ent_heads.mean(0),
            entropy_of_mean=self.ent_mean,
            peak=self.top1_p.clone(),
            head_entropy=self.ent_heads if self.all_heads else None,
            head_peak=self.peak_heads if self.all_heads else None,
            head_top_values=self.h_v if self.all_heads else None,
            head_top_queries=q[self.h_q] if self.all_heads else None,
            head_top_keys=self.h_k if self.all_heads else None,
            dense=self.dense,
            largest_block=self.largest,
        )


def stream_layer(
    q: torch.Tensor,
    k: torch.Tensor,
    layout: TokenLayout,
    queries: torch.Tensor,
    *,
    top_k: int = 50,
    heads: str = "mean",
    query_chunk: int = 64,
    key_chunk: int = 65536,
    dtype: torch.dtype = torch.float32,
    dense: bool = False,
    cross_view_only: bool = False,
    layer: int = 0,
    kind: str = "global",
    route: str = "global",
) -> LayerCapture:
    """Statistics of one attention call from its q and k.

    Global call: q, k `[1, H, T, d]` over the whole scene. Frame call: `[S, H, P, d]`, one batch
    row per frame (each query sees only its frame's keys). Token indices are scene indices.
    """
    if heads not in ("mean", "all"):
        raise ConfigError(f"heads={heads!r}; valid: mean (head-averaged), all (also per head)")
    if top_k < 1 or query_chunk < 1 or key_chunk < 1:
        raise ConfigError("k, query_chunk and key_chunk must be >= 1")
    total, per = layout.num_tokens, layout.tokens_per_frame
    if dense and total > AUTO_ALL_QUERIES:
        raise ConfigError(f"dense maps are for small scenes only (T={total} > {AUTO_ALL_QUERIES})")
    red = _Reducer(
        queries,
        q.shape[1],
        top_k,
        heads == "all",
        total if dense else 0,
        per if cross_view_only else 0,
    )
    rows_all = torch.arange(queries.numel())
    if q.shape[0] == 1 and q.shape[2] == total:
        red.process(
            q[0][:, queries], rows_all, k[0], torch.arange(total), query_chunk, key_chunk, dtype
        )
    elif q.shape[0] == layout.frames and q.shape[2] == per:
        frame_of = queries // per
        for f in frame_of.unique().tolist():
            sel = frame_of == f
            local = queries[sel] - f * per
            key_ids = torch.arange(f * per, (f + 1) * per)
            red.process(q[f][:, local], rows_all[sel], k[f], key_ids, query_chunk, key_chunk, dtype)
    else:
        raise ConfigError(
            f"attention call of shape {tuple(q.shape)} does not match the scene layout "
            f"({layout.frames} frames x {per} tokens, batch 1); analyse one scene at a time"
        )
    return red.result(layer, kind, route, layout)


__all__ = ["AUTO_ALL_QUERIES", "LayerCapture", "stream_layer"]
