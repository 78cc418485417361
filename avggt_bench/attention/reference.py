"""Slow exact references for the attention variants, used only by tests.

`sga_reference` builds, for every query, its explicit key list — 𝒦 in index order, then the query
itself when δ_i = 1, then the mean column(s), repeated |𝒟| times when the log-count bias is on —
and applies a plain softmax in the input dtype (use float64). O(T·|𝒦|) memory.
"""

from __future__ import annotations

import math

import torch

from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.sga import SGAOptions, build_kept_set


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Explicit softmax(q kᵀ / sqrt(d)) v over all keys."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


def sga_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    layout: TokenLayout,
    opts: SGAOptions,
    k_unrotated: torch.Tensor | None = None,
) -> torch.Tensor:
    """Enhanced SGA for q, k, v `[B, H, T, d]` by explicit per-query key lists."""
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


def merge_reference(
    x: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dst_slots: list[set[int]],
    protected: list[int],
    merge_ratio: float,
) -> torch.Tensor:
    """FastVGGT merge -> attention -> unmerge with explicit per-token loops (one scene).

    `x` `[T, C]` is the similarity metric, q/k/v `[H, T, d]`; `dst_slots[f]` the dst token indices
    of frame f; `protected` the protected token indices. Returns `[H, T, d]`, before `proj`.
    """
    tokens = x.shape[0]
    dst = sorted(set().union(*dst_slots))
    src = [t for t in range(tokens) if t not in set(dst)]
    unit = [x[t] / x[t].norm() for t in range(tokens)]
    best, arg = {}, {}
    for s_tok in src:
        # a bf16 matmul: exact products of the bf16 inputs summed in fp32, the sum rounded to
        # bf16 (its output dtype); the rounding makes ties, which go to the lowest dst position
        sims = [
            float((unit[s_tok].bfloat16().float() @ unit[d].bfloat16().float()).bfloat16())
            for d in dst
        ]
        top = max(range(len(dst)), key=lambda i: (sims[i], -i))
        best[s_tok], arg[s_tok] = sims[top], top
    order = sorted(src, key=lambda s_tok: (-best[s_tok], s_tok))
    r = min(int(tokens * merge_ratio), len(src))
    valid = [s_tok for s_tok in order if s_tok not in set(protected)]
    merged, unmerged = valid[:r], valid[r:]
    groups = {i: [dst[i]] for i in range(len(dst))}
    for s_tok in merged:
        groups[arg[s_tok]].append(s_tok)

    def reduce(y):
        rows = [y[:, t] for t in unmerged]
        rows += [torch.stack([y[:, t] for t in groups[i]]).mean(0) for i in range(len(dst))]
        rows += [y[:, t] for t in sorted(protected)]
        return torch.stack(rows, dim=1)

    out_red = softmax_attention(reduce(q), reduce(k), reduce(v))
    out = torch.empty_like(q)
    n_u, n_d = len(unmerged), len(dst)
    for i, t in enumerate(dst):
        out[:, t] = out_red[:, n_u + i]
    for i, t in enumerate(unmerged):
        out[:, t] = out_red[:, i]
    for s_tok in merged:
        out[:, s_tok] = out_red[:, n_u + arg[s_tok]]
    for i, t in enumerate(sorted(protected)):
        out[:, t] = out_red[:, n_u + n_d + i]
    return out
