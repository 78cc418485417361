"""FastVGGT token merging in global attention (route `merge`; arXiv 2509.02560, the release
github.com/mystorm16/FastVGGT).

Per global layer, from that layer's own LN1 output: a destination set (all of frame 0, the special
tokens of every frame, one seeded random position per 2x2 cell of the other frames), a protected
set (every 10th token), cosine matching of the remaining source tokens to their most similar
destination (bf16, 5000-row chunks), merging of q/k/v with the same plan, dense attention on the
shortened sequence, `proj` on the reduced rows, and unmerge by copying. The official behaviour
(mystorm16/FastVGGT `merging/merge.py::token_merge_bipartite2d`) is reproduced by default, quirks
included; each quirk has a switch, off by default, that fixes it (`fastvggt_clean` turns them on):

* `protection`: protected tokens are every 10th token by index, not chosen by content
  (`norm_topk`, the top 10 % by token norm, is an alternative rather than a fix);
* `aligned_grid`: a cell's dst is written as a flat index of the effective 2h_c x 2w_c grid, so
  for odd w the pattern drifts by a column per row and the last patch slots are never dst (fix:
  the true (row, col) of the cell);
* `dedup_protected`: a protected dst token appears twice in the reduced sequence (once merged,
  once raw) and takes merges (fix: once, raw, no merges);
* `no_merge_into_special`: sources may merge into camera/register tokens (the fix is an ablation,
  not part of `fastvggt_clean`);
* `single_frame_guard`: a single-frame input has no sources but still gets the protected tokens
  appended, so it differs from dense (fix: it runs dense);
* `per_batch_plan`: batch element 0's plan is applied to every batch element (fix: one plan each).

One file of about 430 lines: partition, matching, merge/unmerge, the route and its loop reference
are read together against the release's merging code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

from avggt_bench.attention.base import AttentionContext, DenseMixer
from avggt_bench.attention.cost import GlobalLayerCost, attention_core_macs
from avggt_bench.attention.kernels import sdpa
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import ROUTES, Route, RouteSpec, checked_params, softmax_attention
from avggt_bench.errors import ConfigError

MATCH_CHUNK = 5000  # source rows per similarity chunk, as the official code


@dataclass(frozen=True)
class MergeOptions:
    """FastVGGT switches; defaults reproduce the official release, quirks included (module doc)."""

    merge_ratio: float = 0.9
    protect_fraction: float = 0.1
    protection: str = "stride"  # stride (official) | norm_topk
    seed: int = 33
    rng_device: str = "input"  # input (official) | cpu
    aligned_grid: bool = False  # fix: dst at the true (row, col) of each 2x2 cell
    dedup_protected: bool = False  # fix: a protected dst appears once and takes no merges
    no_merge_into_special: bool = False  # an ablation, not part of fastvggt_clean
    single_frame_guard: bool = False  # fix: one frame runs dense
    per_batch_plan: bool = False  # fix: one plan per batch element
    sim_dtype: str = "bf16"  # similarity precision (official: bf16)

    def __post_init__(self) -> None:
        if not 0.0 <= self.merge_ratio < 1.0:
            raise ConfigError(f"merge_ratio={self.merge_ratio} must be in [0, 1)")
        if not 0.0 <= self.protect_fraction < 1.0:
            raise ConfigError(f"protect_fraction={self.protect_fraction} must be in [0, 1)")
        for name, valid in (
            ("protection", ("stride", "norm_topk")),
            ("rng_device", ("input", "cpu")),
            ("sim_dtype", ("bf16", "fp32")),
        ):
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name}={getattr(self, name)!r}; valid: {', '.join(valid)}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> MergeOptions:
        values = checked_params(cls, params, "merge")
        for f in fields(cls):
            if f.name in values:
                values[f.name] = {"bool": bool, "float": float, "int": int}.get(f.type, str)(
                    values[f.name]
                )
        return cls(**values)

    def route_params(self) -> dict[str, Any]:
        default = MergeOptions()
        out = {"merge_ratio": self.merge_ratio}
        for f in fields(self):
            if f.name != "merge_ratio" and getattr(self, f.name) != getattr(default, f.name):
                out[f.name] = getattr(self, f.name)
        return out


@dataclass
class Partition:
    """dst / src / protected masks over the T tokens of one scene (rules: module docstring)."""

    dst: torch.Tensor  # [T] bool
    protected: torch.Tensor  # [T] bool (index set Π, ascending)
    special: torch.Tensor  # [T] bool (camera/register tokens)
    pattern_hash: str

    @property
    def src(self) -> torch.Tensor:
        return ~self.dst


def _cell_draws(layout: TokenLayout, opts: MergeOptions, device: torch.device) -> torch.Tensor:
    """R = randint(0, 4, (S-1, h//2, w//2)) from a generator seeded with `seed` on the device."""
    h, w = layout.grid
    gen_device = device if opts.rng_device == "input" else torch.device("cpu")
    gen = torch.Generator(device=gen_device).manual_seed(opts.seed)
    shape = (max(layout.frames - 1, 0), h // 2, w // 2)
    return torch.randint(0, 4, shape, generator=gen, device=gen_device).to(device)


def partition(
    layout: TokenLayout, opts: MergeOptions, x: torch.Tensor | None = None, device=None
) -> Partition:
    """The merge partition. `x` (`[T, C]`, one scene) is needed only for norm-top-k protection."""
    device = torch.device(device or (x.device if x is not None else "cpu"))
    s, p, n_s = layout.frames, layout.tokens_per_frame, layout.num_special
    h, w = layout.grid
    t = layout.num_tokens
    dst = torch.zeros(s, p, dtype=torch.bool, device=device)
    dst[0] = True
    dst[:, :n_s] = True
    draws = _cell_draws(layout, opts, device)
    if draws.numel():
        h_c, w_c = h // 2, w // 2
        a = torch.arange(h_c, device=device)[:, None]
        b = torch.arange(w_c, device=device)[None, :]
        rows, cols = 2 * a + draws // 2, 2 * b + draws % 2  # [S-1, h_c, w_c]
        # official (`aligned_grid` off): the flat index of the effective 2h_c x 2w_c grid is
        # written as a slot of the true h x w grid; the fix uses the true (row, col)
        slots = rows * w + cols if opts.aligned_grid else rows * (2 * w_c) + cols
        frames = torch.arange(1, s, device=device)[:, None, None].expand_as(slots)
        dst[frames.reshape(-1), n_s + slots.reshape(-1)] = True
        if opts.aligned_grid:
            _edge_cells(dst, layout, opts, device)
    dst = dst.reshape(-1)
    n_p = int(opts.protect_fraction * t)
    protected = torch.zeros(t, dtype=torch.bool, device=device)
    if n_p > 0:
        if opts.protection == "stride":
            step = max(1, t // n_p)
            protected[torch.arange(0, t, step, device=device)[:n_p]] = True
        else:
            if x is None:
                raise ValueError("norm_topk protection needs the token features")
            protected[torch.topk(x.float().norm(dim=-1), n_p).indices] = True
    special = torch.zeros(s, p, dtype=torch.bool, device=device)
    special[:, :n_s] = True
    digest = hashlib.sha256(dst.cpu().numpy().tobytes()).hexdigest()[:16]
    return Partition(dst, protected, special.reshape(-1), digest)


def _edge_cells(dst: torch.Tensor, layout: TokenLayout, opts: MergeOptions, device) -> None:
    """Aligned grid: partial cells on the right/bottom edge (odd w or h) get one random dst each."""
    s, n_s = layout.frames, layout.num_special
    h, w = layout.grid
    cells = []
    if w % 2:
        cells += [(2 * a, w - 1, 2) for a in range(h // 2)]  # 2 x 1 cells: pick a row
    if h % 2:
        cells += [(h - 1, 2 * b, 1) for b in range(w // 2)]  # 1 x 2 cells: pick a column
    if w % 2 and h % 2:
        cells.append((h - 1, w - 1, 0))
    if not cells or s < 2:
        return
    gen = torch.Generator().manual_seed(opts.seed + 1)
    picks = torch.randint(0, 2, (s - 1, len(cells)), generator=gen)
    for f in range(1, s):
        for c, (r, col, kind) in enumerate(cells):
            off = int(picks[f - 1, c])
            rr, cc = (r + off, col) if kind == 2 else (r, col + off) if kind == 1 else (r, col)
            dst[f, n_s + rr * w + cc] = True


@dataclass
class MergePlan:
    """Index sets of one merge: reduced = [U (unmerged sources), dst' (merged), Π (protected)]."""

    dst_idx: torch.Tensor  # [D] ascending
    unmerged_idx: torch.Tensor  # [U] in matching order
    merged_idx: torch.Tensor  # [M] src tokens merged away
    merged_into: torch.Tensor  # [M] position in dst_idx each merged token joins
    protected_idx: torch.Tensor  # [Π] ascending
    num_tokens: int

    @property
    def length(self) -> int:
        return self.unmerged_idx.numel() + self.dst_idx.numel() + self.protected_idx.numel()


def match(x: torch.Tensor, part: Partition, opts: MergeOptions) -> MergePlan:
    """Cosine matching of one scene's tokens `x` `[T, C]` (the LN1 output), then the M/U split.

    Each source token picks its most similar destination (first maximum, i.e. the lowest dst
    position, on ties); sources are ordered by that similarity, descending (ties: lower source
    first); protected sources are removed; the first r = floor(T * ratio) merge, the rest stay.
    """
    t = x.shape[0]
    dst_idx = torch.nonzero(part.dst).squeeze(1)
    protected_idx = torch.nonzero(part.protected).squeeze(1)
    if opts.dedup_protected:  # fix: a protected dst appears once, raw, and takes no merges
        dst_idx = dst_idx[~part.protected[dst_idx]]
    src_idx = torch.nonzero(part.src).squeeze(1)
    empty = dst_idx.new_zeros(0)
    if src_idx.numel() == 0 or dst_idx.numel() == 0:
        return MergePlan(dst_idx, src_idx[~part.protected[src_idx]], empty, empty, protected_idx, t)
    metric = x / x.norm(dim=-1, keepdim=True)
    dtype = torch.bfloat16 if opts.sim_dtype == "bf16" else torch.float32
    dst_rows = metric[dst_idx].to(dtype)
    excluded = part.special[dst_idx] if opts.no_merge_into_special else None  # ablation
    best = torch.empty(src_idx.numel(), dtype=x.dtype, device=x.device)
    arg = torch.empty(src_idx.numel(), dtype=torch.long, device=x.device)
    for c0 in range(0, src_idx.numel(), MATCH_CHUNK):
        sim = (metric[src_idx[c0 : c0 + MATCH_CHUNK]].to(dtype) @ dst_rows.T).float()
        if excluded is not None:
            sim = sim.masked_fill(excluded, float("-inf"))
        top = sim.argmax(dim=1)  # the first maximum: the lowest dst position
        arg[c0 : c0 + top.numel()] = top
        best[c0 : c0 + top.numel()] = sim.gather(1, top[:, None])[:, 0].to(x.dtype)
    order = torch.sort(best, descending=True, stable=True).indices
    r = min(int(t * opts.merge_ratio), src_idx.numel())
    valid = order[~part.protected[src_idx[order]]]
    merged, unmerged = valid[: min(r, valid.numel())], valid[min(r, valid.numel()) :]
    return MergePlan(dst_idx, src_idx[unmerged], src_idx[merged], arg[merged], protected_idx, t)


def reduce_tokens(y: torch.Tensor, plan: MergePlan) -> torch.Tensor:
    """`[.., T, c]` -> `[.., L, c]`: [U, dst' (mean with merged sources, dst included), Π raw]."""
    dst = y[..., plan.dst_idx, :]
    if plan.merged_idx.numel():
        index = plan.merged_into.view(*([1] * (y.dim() - 2)), -1, 1).expand(
            *y.shape[:-2], -1, y.shape[-1]
        )
        dst = dst.scatter_reduce(-2, index, y[..., plan.merged_idx, :], "mean", include_self=True)
    return torch.cat((y[..., plan.unmerged_idx, :], dst, y[..., plan.protected_idx, :]), dim=-2)


def restore_tokens(z: torch.Tensor, plan: MergePlan) -> torch.Tensor:
    """`[.., L, c]` -> `[.., T, c]` by copying, in the official order: dst, then U, then merged
    sources (their dst's row), then Π last (overwriting dst outputs at dst ∩ Π)."""
    n_u, n_d = plan.unmerged_idx.numel(), plan.dst_idx.numel()
    out = z.new_empty(*z.shape[:-2], plan.num_tokens, z.shape[-1])
    dst_rows = z[..., n_u : n_u + n_d, :]
    out[..., plan.dst_idx, :] = dst_rows
    out[..., plan.unmerged_idx, :] = z[..., :n_u, :]
    out[..., plan.merged_idx, :] = dst_rows[..., plan.merged_into, :]
    out[..., plan.protected_idx, :] = z[..., n_u + n_d :, :]
    return out


@ROUTES.register("merge", "FastVGGT: token merging inside global attention")
class MergeRoute(Route):
    """Runs the whole global block: the merge plan needs the LN1 output, and `proj` runs on the
    reduced rows (as the official code does) before the copy-unmerge."""

    name = "merge"
    report_facts: ClassVar[dict[str, str]] = {"keep_ratio": "kept tokens (merge)"}

    def __init__(self, spec: RouteSpec, policy: str = "default") -> None:
        super().__init__(spec)
        self.options = MergeOptions.from_params(spec.params)
        self.policy = policy
        self.last: dict[str, Any] = {}

    def plans(self, a: torch.Tensor, layout: TokenLayout) -> list[MergePlan]:
        part = None
        plans = []
        for b in range(a.shape[0] if self.options.per_batch_plan else 1):
            if part is None or self.options.protection == "norm_topk":
                part = partition(layout, self.options, a[b], a.device)
            plans.append(match(a[b].float(), part, self.options))
        self.last = {
            "tokens": layout.num_tokens,
            "dst": int(part.dst.sum()),
            "src": int(part.src.sum()),
            "protected": int(part.protected.sum()),
            "unmerged": plans[0].unmerged_idx.numel(),
            "merged": plans[0].merged_idx.numel(),
            "length": plans[0].length,
            "keep_ratio": plans[0].length / layout.num_tokens,
            "dst_pattern_hash": part.pattern_hash,
        }
        return plans

    def run(self, block: nn.Module, x, pos, layout: TokenLayout) -> torch.Tensor:
        if self.options.merge_ratio == 0 or (
            layout.frames == 1 and self.options.single_frame_guard
        ):
            # no-op setting (r = 0) and `single_frame_guard` (S = 1): the dense block, same kernel
            self.last = {"tokens": layout.num_tokens, "length": layout.num_tokens, "path": "dense"}
            return block(x, pos, layout, DenseMixer(self.policy))
        a = block.norm1(x)
        q, k, v, _ = block.attn.qkv_heads(a, pos, layout)
        plans = self.plans(a, layout)
        outs = []
        for b in range(x.shape[0]):
            plan = plans[b] if self.options.per_batch_plan else plans[0]  # official: batch 0's plan
            qb, kb, vb = (reduce_tokens(t[b : b + 1], plan) for t in (q, k, v))
            reduced = block.attn.merge_heads(sdpa(qb, kb, vb, self.policy))  # proj on L rows
            outs.append(restore_tokens(reduced, plan))
        branch = torch.cat(outs, dim=0)
        x = x + (block.ls1(branch) if block.ls1 is not None else branch)
        return x + block.mlp_branch(x)

    def describe(self, layout: TokenLayout) -> dict[str, Any]:
        return dict(self.last)

    def cost(self, layout: TokenLayout, dim: int, observed: dict | None = None) -> GlobalLayerCost:
        n = reduced_length(layout, self.options)
        t, length = layout.num_tokens, n["length"]
        return GlobalLayerCost(
            str(self.spec),
            3 * t * dim * dim + length * dim * dim + 8 * t * dim * dim,  # qkv, proj on L, MLP
            attention_core_macs(length, length, dim),
            n["src"] * n["matched_dst"] * dim,  # the bf16 matching
            n,
        )

    def reference(self, q, k, v, ctx: AttentionContext) -> torch.Tensor:
        """Merge, attention and unmerge of batch element 0 by explicit loops (`merge_reference`);
        needs the block's LN1 output `ctx.x` (the similarity metric)."""
        layout, x = ctx.layout, ctx.x[0]
        part = partition(layout, self.options, x, x.device)
        per_frame = layout.tokens_per_frame
        dst = torch.nonzero(part.dst).squeeze(1).tolist()
        slots = [{t for t in dst if t // per_frame == f} for f in range(layout.frames)]
        protected = torch.nonzero(part.protected).squeeze(1).tolist()
        ratio = self.options.merge_ratio
        return merge_reference(x, q[0], k[0], v[0], slots, protected, ratio)[None]


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


def reduced_length(layout: TokenLayout, opts: MergeOptions) -> dict[str, int]:
    """|dst|, |src|, |Π|, |U| and L without matching: |U| = #valid - min(floor(T·ratio), #valid)."""
    part = partition(layout, opts)
    t = layout.num_tokens
    dst = part.dst & ~part.protected if opts.dedup_protected else part.dst
    valid = int((part.src & ~part.protected).sum())
    unmerged = valid - min(int(t * opts.merge_ratio), int(part.src.sum()), valid)
    n_dst, n_p = int(dst.sum()), int(part.protected.sum())
    return {
        "dst": int(part.dst.sum()),
        "src": int(part.src.sum()),
        "protected": n_p,
        "unmerged": unmerged,
        "length": unmerged + n_dst + n_p,
        "matched_dst": n_dst,
    }


MERGE_SWITCHES = tuple(f.name for f in fields(MergeOptions))


def fastvggt_routes(cfg, family: str, num_layers: int) -> list[str]:
    """`merge` on every global layer g >= `merging` (default 0: all), dense before."""
    if family != "vggt" and not cfg.get("allow_pi3_port", False):
        raise ConfigError(
            "FastVGGT's released code supports VGGT only (it asserts VGGT's token layout); "
            "a π³ port would be an unpublished method: set attention.allow_pi3_port=true to run it "
            "anyway (labelled)"
        )
    merging = int(cfg.get("merging", 0))
    if not 0 <= merging <= num_layers:
        raise ConfigError(f"merging={merging} must be within 0..{num_layers}")
    opts = MergeOptions.from_params({k: cfg[k] for k in MERGE_SWITCHES if k in cfg})
    route = str(RouteSpec("merge", opts.route_params()))
    return ["global" if g < merging else route for g in range(num_layers)]


def _register() -> None:
    from avggt_bench.attention.config import METHODS

    METHODS.add("fastvggt", fastvggt_routes, "FastVGGT token merging in the global layers")


_register()
