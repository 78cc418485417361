"""Subsampled global attention (SGA) with diagonal preservation and mean-fill (AVGGT).

AVGGT: arXiv 2512.02541; the authors released no code, so where the paper is silent this module
follows our reading, and every such choice is a switch (`conf/attention/avggt.yaml` marks each
default [paper] or [inferred]).

All queries are kept. Keys/values are restricted to the kept set 𝒦 (special tokens, VGGT's frame 0,
the top-left patch of every s_h x s_w window of the other frames). Each query also sees its own key
when it was dropped (diagonal) and one mean key/value pair standing in for the dropped patches
(mean-fill); the three parts share one softmax. Computed as one fused attention over 𝒦 that returns
the log-sum-exp, then a max-subtracted merge of the diagonal and mean terms, chunked over queries.
Frame-sharded (`avggt_bench.parallel`), each rank keeps its queries, all-gathers the kept K/V and
all-reduces the mean-fill sums and counts; the merge is the same code. One file of about 410 lines:
the kept set, the sums and the merge are private to the mixer in both forms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import torch

from avggt_bench.attention.base import AttentionContext
from avggt_bench.attention.kernels import sdpa
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.lse import attn_lse, choose_backend
from avggt_bench.attention.ring import RingMixer
from avggt_bench.attention.routes import checked_params
from avggt_bench.errors import ConfigError
from avggt_bench.parallel.comm import all_gather_blocks, all_reduce_sum
from avggt_bench.parallel.shard import Shard

SIGMA_STRIDES = {1: (1, 1), 2: (1, 2), 4: (2, 2), 6: (2, 3), 9: (3, 3)}
CHOICES = {
    "grid_phase": ("fixed", "per_frame"),
    "mean_scope": ("global", "per_frame"),
    "mean_over": ("dropped", "all_patches"),
    "mean_key_space": ("post_rope", "pre_rope"),
    "mean_path": ("merge", "append"),
}
QUERY_CHUNK = 65536  # tokens per merge chunk: bounds the fp32 temporaries


@dataclass(frozen=True)
class SGAOptions:
    """Every switch of an SGA layer; defaults: `conf/attention/avggt.yaml` ([paper], [inferred])."""

    sigma: int = 9
    stride: tuple[int, int] | None = None
    grid_anchor: tuple[int, int] = (0, 0)
    grid_phase: str = "fixed"
    keep_special: bool = True
    keep_first_frame: bool = True
    diag: bool = True
    diag_for_kept_queries: bool = False
    mean: bool = True
    mean_scope: str = "global"
    mean_over: str = "dropped"
    mean_key_space: str = "post_rope"
    mean_log_count_bias: bool = False
    mean_exclude_self: bool = False
    mean_path: str = "merge"
    kernel: str = "auto"

    def __post_init__(self) -> None:
        if self.stride is None and self.sigma not in SIGMA_STRIDES:
            raise ConfigError(
                f"sigma={self.sigma} is not in the AVGGT table; valid: "
                f"{', '.join(map(str, SIGMA_STRIDES))} (or give an explicit stride=[s_h, s_w])"
            )
        if self.stride is not None and (len(self.stride) != 2 or min(self.stride) < 1):
            raise ConfigError(f"stride={self.stride} must be two positive integers [s_h, s_w]")
        for name, valid in CHOICES.items():
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name}={getattr(self, name)!r}; valid: {', '.join(valid)}")
        if self.mean_path == "append" and (
            self.diag or self.mean_log_count_bias or self.mean_exclude_self
        ):
            raise ConfigError(
                "mean_path=append cannot express the diagonal, the log-count bias or the "
                "exclude-self mean; use mean_path=merge (the default)"
            )
        choose_backend(self.kernel, torch.device("cpu"), torch.float32)  # validates the name

    @property
    def strides(self) -> tuple[int, int]:
        return tuple(self.stride) if self.stride is not None else SIGMA_STRIDES[self.sigma]

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SGAOptions:
        values = checked_params(cls, params, "sga")
        for key in ("stride", "grid_anchor"):
            if values.get(key) is not None:
                values[key] = tuple(int(x) for x in values[key])
        for f in fields(cls):
            if f.type == "bool" and f.name in values:
                values[f.name] = bool(values[f.name])
        return cls(**values)

    def route_params(self) -> dict[str, Any]:
        """Route-string parameters: the four headline ones, then every non-default switch."""
        default = SGAOptions()
        head = ("sigma", "diag", "mean", "keep_first_frame")
        out = {k: getattr(self, k) for k in head}
        for f in fields(self):
            if f.name not in head and getattr(self, f.name) != getattr(default, f.name):
                out[f.name] = getattr(self, f.name)
        return out

    def resolved(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


GRID_FIELDS = (
    "sigma",
    "stride",
    "grid_anchor",
    "grid_phase",
    "keep_special",
    "keep_first_frame",
    "mean_over",
)


@dataclass(frozen=True)
class KeptSet:
    """Index sets of one SGA layout, per scene (shared by the batch)."""

    idx: torch.Tensor  # [K] ascending token indices of 𝒦 (σ = 1: the identity)
    kept: torch.Tensor  # [T] bool, token ∈ 𝒦
    dropped: torch.Tensor  # [T] bool, token ∈ 𝒟 (patch tokens not in 𝒦)
    mean_mask: torch.Tensor  # [S, P] bool, tokens averaged by the mean-fill term

    @property
    def num_tokens(self) -> int:
        return int(self.kept.numel())

    @property
    def num_kept(self) -> int:
        return int(self.idx.numel())

    @property
    def num_dropped(self) -> int:
        return int(self.dropped.sum())


def grid_kept_mask(layout: TokenLayout, opts: SGAOptions) -> torch.Tensor:
    """`[S, h, w]` bool: patch (r, c) of frame f is the top-left of its s_h x s_w window.

    Windows cut by the right or bottom edge still keep their top-left patch, so a frame keeps
    ceil(h/s_h)·ceil(w/s_w) patches; the same grid is used in every frame unless `grid_phase`
    shifts it per frame.
    """
    s_h, s_w = opts.strides
    h, w = layout.grid
    rows, cols = torch.arange(h)[:, None], torch.arange(w)[None, :]
    masks = []
    for f in range(layout.frames):
        off_r, off_c = opts.grid_anchor
        if opts.grid_phase == "per_frame":
            off_r, off_c = off_r + f % s_h, off_c + (f // s_h) % s_w
        masks.append(((rows - off_r) % s_h == 0) & ((cols - off_c) % s_w == 0))
    return torch.stack(masks)


def build_kept_set(layout: TokenLayout, opts: SGAOptions) -> KeptSet:
    """𝒦 = specials ∪ frame 0 (VGGT) ∪ grid-kept patches; 𝒟 = the other patches (CPU tensors)."""
    s, p, n_s = layout.frames, layout.tokens_per_frame, layout.num_special
    is_patch = torch.zeros(s, p, dtype=torch.bool)
    is_patch[:, n_s:] = True
    kept = torch.zeros(s, p, dtype=torch.bool)
    kept[:, :n_s] = opts.keep_special
    kept[:, n_s:] = grid_kept_mask(layout, opts).reshape(s, -1)
    if opts.keep_first_frame:
        kept[0] = True
    dropped = is_patch & ~kept
    mean_mask = is_patch if opts.mean_over == "all_patches" else dropped
    flat = kept.reshape(-1)
    return KeptSet(torch.nonzero(flat).squeeze(1), flat, dropped.reshape(-1), mean_mask)


@lru_cache(maxsize=64)
def _cached_kept_set(layout: TokenLayout, grid_key: tuple, device: str) -> KeptSet:
    ks = build_kept_set(layout, SGAOptions(**dict(grid_key)))
    return KeptSet(*(getattr(ks, f.name).to(device) for f in fields(KeptSet)))


def kept_set(layout: TokenLayout, opts: SGAOptions, device: torch.device | str = "cpu") -> KeptSet:
    """Cached per (layout, grid options, device): built once, shared by every SGA layer."""
    key = tuple((f, getattr(opts, f)) for f in GRID_FIELDS)
    return _cached_kept_set(layout, key, str(device))


def _frame_sums(x: torch.Tensor, mask: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """Per-frame sums of masked tokens: x `[B, H, S*P, d]`, mask `[S, P]` -> `[B, H, S, d]`,
    accumulated in at least fp32 (half-precision inputs are converted chunk by chunk)."""
    b, h, _, d = x.shape
    s, p = mask.shape
    acc = accumulation_dtype(x.dtype)
    x = x.view(b, h, s, p, d)
    weights = mask.to(acc)[:, None, :]  # [S, 1, P]: a row vector per frame, read in place
    if x.dtype == acc:
        return (weights @ x)[..., 0, :]
    out = x.new_zeros((b, h, s, d), dtype=acc)
    for f0 in range(0, s, chunk_frames):
        f1 = min(s, f0 + chunk_frames)
        out[:, :, f0:f1] = (weights[f0:f1] @ x[:, :, f0:f1].to(acc))[..., 0, :]
    return out


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for half precisions and fp32, fp64 for fp64: sums and merges never lose precision."""
    return torch.promote_types(dtype, torch.float32)


class SGAMixer:
    """The SGA token mixer of one global layer (route `sga`)."""

    def __init__(
        self, opts: SGAOptions, policy: str = "default", shard: Shard | None = None
    ) -> None:
        self.opts = opts
        self.policy = policy
        self.shard = shard  # frame-sharded: q/k/v are this rank's frames (avggt_bench.parallel)
        self.needs_unrotated_keys = opts.mean and opts.mean_key_space == "pre_rope"
        self.last_backend: str | None = None

    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext
    ) -> torch.Tensor:
        ks = kept_set(ctx.layout, self.opts, q.device)
        if ks.num_kept == ks.num_tokens and ks.num_dropped == 0:
            self.last_backend = "dense"  # σ = 1 or nothing to drop: the exact dense path
            if self.shard is not None:
                return RingMixer(self.shard)(q, k, v, ctx)
            return sdpa(q, k, v, self.policy)
        frames = self._frames(ctx.layout)
        rows = slice(
            frames.start * ctx.layout.tokens_per_frame, frames.stop * ctx.layout.tokens_per_frame
        )
        k_kept, v_kept = self._kept_kv(k, v, ks, ctx.layout)
        opts = self.opts
        mean = self._means(k, v, ks, ctx, frames) if opts.mean and ks.mean_mask.any() else None
        if mean is not None and opts.mean_path == "append":  # mean rows as plain keys (= merge)
            n = mean.counts[:, None]
            k_kept = torch.cat((k_kept, (mean.k_sum / n).to(k.dtype)), dim=2)
            v_kept = torch.cat((v_kept, (mean.v_sum / n).to(v.dtype)), dim=2)
            mean = None
        out, lse, self.last_backend = attn_lse(q, k_kept, v_kept, opts.kernel)
        diag_mask = None
        if opts.diag:
            diag_mask = torch.ones_like(ks.kept) if opts.diag_for_kept_queries else ~ks.kept
            diag_mask = diag_mask[rows]
            if not diag_mask.any():
                diag_mask = None
        if mean is None and diag_mask is None:
            return out
        return self._merge(q, k, v, out, lse, mean, diag_mask, ks)

    def _frames(self, layout: TokenLayout) -> slice:
        """The scene's frames this call holds: all of them, or this rank's block."""
        if self.shard is None:
            return slice(0, layout.frames)
        return slice(self.shard.split.start, self.shard.split.stop)

    def _kept_kv(self, k, v, ks: KeptSet, layout: TokenLayout) -> tuple[torch.Tensor, torch.Tensor]:
        """K/V of the kept set; sharded: each rank's kept rows, all-gathered in scene order."""
        if self.shard is None:
            return k[:, :, ks.idx], v[:, :, ks.idx]
        split, per = self.shard.split, layout.tokens_per_frame
        kept = kept_set(layout, self.opts).kept.view(layout.frames, per)  # on the CPU: no sync
        counts = [int(kept[a:b].sum()) for a, b in zip(split.bounds[:-1], split.bounds[1:])]
        local = torch.nonzero(kept[split.start : split.stop].reshape(-1)).squeeze(1).to(k.device)
        kv = torch.stack((k[:, :, local], v[:, :, local]))
        kv = all_gather_blocks(kv, counts, split.rank, 3, self.shard.log, self.shard.group)
        return kv[0], kv[1]

    def _means(self, k, v, ks: KeptSet, ctx: AttentionContext, frames: slice) -> MeanTerms:
        """fp32 sums of the mean-fill keys/values per column (one global, or one per frame);
        sharded, each rank sums its frames and one all-reduce adds the sums and counts."""
        keys = ctx.k_unrotated if self.opts.mean_key_space == "pre_rope" else k
        mask = ks.mean_mask[frames]
        per_frame_tokens = mask.shape[1]
        chunk = max(1, QUERY_CHUNK // per_frame_tokens)
        k_sum = _frame_sums(keys, mask, chunk)
        v_sum = _frame_sums(v, mask, chunk)
        counts = mask.sum(1).to(k_sum.dtype)
        frame_of_token = (
            frames.start + torch.arange(keys.shape[2], device=k.device) // per_frame_tokens
        )
        if self.opts.mean_scope == "global":
            k_sum, v_sum, counts = k_sum.sum(2, True), v_sum.sum(2, True), counts.sum(0, True)
            if self.shard is not None:
                k_sum, v_sum, counts = self._all_reduce(k_sum, v_sum, counts)
            column = torch.zeros_like(frame_of_token)
        else:  # frames without mean tokens contribute no column
            if self.shard is not None:
                k_sum, v_sum, counts = self._all_reduce(
                    *(
                        _scene_frames(t, frames, ks.mean_mask.shape[0], d)
                        for t, d in ((k_sum, 2), (v_sum, 2), (counts, 0))
                    )
                )
            present = counts > 0
            k_sum, v_sum, counts = k_sum[:, :, present], v_sum[:, :, present], counts[present]
            # frames without a column hold no mean tokens; their index is never used
            column = (torch.cumsum(present, 0) - 1).clamp_min(0)[frame_of_token]
        return MeanTerms(k_sum, v_sum, counts, column, mask.reshape(-1), keys)

    def _all_reduce(self, k_sum, v_sum, counts):
        """One all-reduce of the packed sums and counts over the ranks."""
        flat = torch.cat((k_sum.reshape(-1), v_sum.reshape(-1), counts.reshape(-1)))
        flat = all_reduce_sum(flat, self.shard.log, self.shard.group)
        a, b = k_sum.numel(), v_sum.numel()
        return (
            flat[:a].view_as(k_sum),
            flat[a : a + b].view_as(v_sum),
            flat[a + b :].view_as(counts),
        )

    def _merge(self, q, k, v, out, lse, mean: MeanTerms | None, diag_mask, ks) -> torch.Tensor:
        """out_i = (α·o_i + β·v_i + Σ_m γ_m·v̄_m) / (α + β + Σ_m γ_m), max-subtracted.

        Means are handled as sums: v̄_m = V_m / n_m. The exclude-self switch subtracts the
        query's own key/value from its own column (n_m - 1), a rank-one correction per query.
        The per-row weights are formed first, then the output is one multiply, one fused
        multiply-add (diagonal) and one batched matmul (mean columns) per chunk.
        """
        opts = self.opts
        scale = 1.0 / math.sqrt(q.shape[-1])
        acc = accumulation_dtype(q.dtype)
        tokens = q.shape[2]
        columns = mean.counts.numel() if mean is not None else 0
        chunk = max(1, QUERY_CHUNK // max(1, columns))
        result = torch.empty_like(out)
        neg_inf = float("-inf")
        for t0 in range(0, tokens, chunk):
            t1 = min(tokens, t0 + chunk)
            qc = q[:, :, t0:t1].to(acc)
            a = lse[:, :, t0:t1].to(acc)
            m = a
            if diag_mask is not None:
                b = torch.linalg.vecdot(qc, k[:, :, t0:t1].to(acc)) * scale
                b = b.masked_fill(~diag_mask[t0:t1], neg_inf)
                m = torch.maximum(m, b)
            if mean is not None:
                raw = qc @ mean.k_sum.transpose(-1, -2)  # [B, H, t, M]
                count = mean.counts.expand(t1 - t0, columns)
                if opts.mean_exclude_self:
                    own = torch.nn.functional.one_hot(mean.column[t0:t1], columns).bool()
                    own &= mean.in_mean[t0:t1, None]
                    self_logit = torch.linalg.vecdot(qc, mean.keys[:, :, t0:t1].to(acc))
                    raw = raw - own * self_logit[..., None]
                    count = count - own.to(acc)
                c = raw / count * scale
                if opts.mean_log_count_bias:
                    c = c + torch.log(count)
                c = c.masked_fill(count <= 0, neg_inf)
                m = torch.maximum(m, c.amax(-1))
            alpha = torch.exp(a - m)
            den = alpha.clone()
            if diag_mask is not None:
                beta = torch.exp(b - m)
                den += beta
            if mean is not None:
                gamma = torch.exp(c - m[..., None])
                den += gamma.sum(-1)
            # accumulate in place: into the output slice when it already has the accumulation dtype
            direct = result.dtype == acc
            merged = result[:, :, t0:t1] if direct else torch.empty_like(qc)
            torch.mul(out[:, :, t0:t1].to(acc), (alpha / den)[..., None], out=merged)
            if diag_mask is not None:
                merged.addcmul_(v[:, :, t0:t1].to(acc), (beta / den)[..., None])
            if mean is not None:
                per_sum = gamma / (count.clamp_min(1.0) * den[..., None])
                if columns == 1:  # an outer product: fused, no temporary
                    merged.addcmul_(per_sum, mean.v_sum)
                else:
                    merged.add_(per_sum @ mean.v_sum)
                if opts.mean_exclude_self:
                    own_weight = (per_sum * own).sum(-1, keepdim=True)
                    merged.addcmul_(v[:, :, t0:t1].to(acc), own_weight, value=-1.0)
            if not direct:
                result[:, :, t0:t1] = merged
        return result


def _scene_frames(t: torch.Tensor, frames: slice, total: int, dim: int) -> torch.Tensor:
    """`t` with its frames (along `dim`) placed at `frames` of a zero tensor of `total` frames."""
    shape = list(t.shape)
    shape[dim] = total
    out = t.new_zeros(shape)
    out.narrow(dim, frames.start, frames.stop - frames.start).copy_(t)
    return out


@dataclass
class MeanTerms:
    """Mean-fill columns as fp32 sums: `k_sum`, `v_sum` `[B, H, M, d]`, `counts` `[M]`; per token
    its column (`column`) and whether its own key is averaged (`in_mean`)."""

    k_sum: torch.Tensor
    v_sum: torch.Tensor
    counts: torch.Tensor
    column: torch.Tensor
    in_mean: torch.Tensor
    keys: torch.Tensor
