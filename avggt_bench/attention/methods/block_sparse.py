"""Block-sparse global attention ("Faster VGGT with Block-Sparse Global Attention",
arXiv:2509.07120; the sparse-vggt release), route `block_sparse`.

Special queries attend densely to every key. Patch queries attend to the key sequence
[patch keys ; special keys] in blocks of 64: pooled query blocks (128) score pooled patch-key
blocks, the CDF threshold τ and the sparsity cap ρ select blocks per (batch, head, query block), and
the trailing blocks holding the special keys ("sinks") are always selected. The selection is the
released one (sparse-vggt `src/sparse_vggt/models/attention.py` `predict_attention` and
`src/sparse_vggt/utils/sparse_wrapper.py` `get_block_mask`, with its SpargeAttn fork's
`fill_block_map_triton`), including the boundary quirk (special keys sharing the last patch block);
deviations are named switches (`pad_patch_keys`, `score_fp32`, `min_blocks=0`). Execution runs on a
portable kernel with the same mask semantics: `gather` (exact softmax over the gathered blocks;
CPU default and reference), `flex` (FlexAttention block masks, CUDA) or `masked_dense` (token-level
mask; tests only). One file of about 460 lines: the selection, its executors and the route (cost,
reference, microbenchmark) are read together against the release, function by function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from avggt_bench.attention.base import AttentionContext
from avggt_bench.attention.cost import GlobalLayerCost, attention_core_macs, linear_macs
from avggt_bench.attention.kernels import sdpa
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import ROUTES, Route, RouteSpec, checked_params
from avggt_bench.errors import ConfigError
from avggt_bench.timing import random_qkv, time_repeats

KERNELS = ("auto", "gather", "flex", "masked_dense")
GATHER_KEYS_PER_CHUNK = 1 << 22  # bounds the gathered K/V of one chunk (per batch x head)


@dataclass(frozen=True)
class BlockSparseOptions:
    """Selection and execution switches (the release's values by default; see the module doc)."""

    rho: float | None = 0.5
    tau: float | None = 0.9
    topk: int | None = None
    q_block: int = 128
    k_block: int = 64
    pool_mode: str = "avg"
    min_blocks: int = 1  # the release keeps >= 1 key block per query row (fill-block-map kernel)
    pad_patch_keys: bool = False  # boundary-quirk fix (block_sparse_clean)
    score_fp32: bool = False  # pool, score and threshold in float32, autocast off (clean)
    chunked_selection: bool = True
    selection_chunk: int = 512
    kernel: str = "auto"

    def __post_init__(self) -> None:
        if self.rho is None and self.tau is None and self.topk is None:
            raise ConfigError("block_sparse needs rho, tau or topk")
        if self.rho is not None and not 0.0 <= self.rho <= 1.0:
            raise ConfigError(f"rho={self.rho} must be in [0, 1]")
        if self.tau is not None and not 0.0 <= self.tau <= 1.0:
            raise ConfigError(f"tau={self.tau} must be in [0, 1]")
        if self.q_block < 1 or self.k_block < 1 or self.q_block % self.k_block:
            raise ConfigError(
                f"block sizes (q {self.q_block}, k {self.k_block}) must be positive with the "
                "query block a multiple of the key block (the kernels tile (128, 64))"
            )
        if self.pool_mode not in ("avg", "max"):
            raise ConfigError(f"pool_mode={self.pool_mode!r}; valid: avg, max")
        if self.min_blocks not in (0, 1):
            raise ConfigError(
                f"min_blocks={self.min_blocks}; valid: 1 (the release: at least one key block per "
                "query block) or 0 (a query block may see only the sinks)"
            )
        if self.kernel not in KERNELS:
            raise ConfigError(f"kernel={self.kernel!r}; valid: {', '.join(KERNELS)}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> BlockSparseOptions:
        values = checked_params(cls, params, "block_sparse")
        for key in ("pad_patch_keys", "chunked_selection", "score_fp32"):
            if key in values:
                values[key] = bool(values[key])
        for key in ("rho", "tau"):
            if values.get(key) in ("none", "null"):
                values[key] = None
        return cls(**values)

    def route_params(self) -> dict[str, Any]:
        default = BlockSparseOptions()
        out = {"rho": self.rho, "tau": self.tau}
        for f in fields(self):
            if f.name not in out and getattr(self, f.name) != getattr(default, f.name):
                out[f.name] = getattr(self, f.name)
        return {k: ("none" if v is None else v) for k, v in out.items()}


@dataclass(frozen=True)
class Geometry:
    """Token and block counts of one layout: patch/special positions, query and key blocks."""

    patch_idx: torch.Tensor  # [T_p] positions of patch tokens in the sequence
    special_idx: torch.Tensor  # [T_s]
    t_p: int
    t_s: int
    patch_key_len: int  # T_p, or T_p padded to a multiple of k_block (pad_patch_keys)
    q_blocks: int
    k_patch_blocks: int
    k_blocks: int  # K_tot over the concatenated key sequence

    @property
    def key_len(self) -> int:
        return self.patch_key_len + self.t_s


def geometry(layout: TokenLayout, opts: BlockSparseOptions, device) -> Geometry:
    s, p, n_s = layout.frames, layout.tokens_per_frame, layout.num_special
    base = torch.arange(s, device=device)[:, None] * p
    patch_idx = (base + torch.arange(n_s, p, device=device)[None]).reshape(-1)
    special_idx = (base + torch.arange(n_s, device=device)[None]).reshape(-1)
    t_p, t_s = patch_idx.numel(), special_idx.numel()
    k_patch = math.ceil(t_p / opts.k_block)
    patch_key_len = k_patch * opts.k_block if opts.pad_patch_keys else t_p
    return Geometry(
        patch_idx,
        special_idx,
        t_p,
        t_s,
        patch_key_len,
        math.ceil(t_p / opts.q_block),
        k_patch,
        math.ceil((patch_key_len + t_s) / opts.k_block),
    )


def pool_blocks(x: torch.Tensor, block: int, mode: str = "avg") -> torch.Tensor:
    """`[.., n, d]` -> `[.., ceil(n / block), d]`; the last partial block pools its real members.

    The release's call exactly (sparse-vggt `models/attention.py` `predict_attention`):
    `F.avg_pool1d` / `F.max_pool1d` with `ceil_mode=True` over tokens laid out as
    `[(B·H), d, n]`, in the input's dtype, so the pooled values match it bit for bit.
    """
    lead, (n, d) = x.shape[:-2], x.shape[-2:]
    fn = F.avg_pool1d if mode == "avg" else F.max_pool1d
    pooled = fn(x.reshape(-1, n, d).transpose(1, 2), kernel_size=block, ceil_mode=True)
    return pooled.transpose(1, 2).reshape(*lead, -1, d)


def block_probabilities(
    q_bar: torch.Tensor, k_bar: torch.Tensor, scale: float, opts: BlockSparseOptions
) -> torch.Tensor:
    """softmax(q̄·k̄ᵀ·scale) over key blocks, as `predict_attention` (dtype as the inputs under
    the caller's autocast); `score_fp32` computes it in float32 with autocast off."""
    if not opts.score_fp32:
        return F.softmax(q_bar @ k_bar.transpose(-1, -2) * scale, dim=-1)
    with torch.autocast(q_bar.device.type, enabled=False):
        scores = q_bar.float() @ k_bar.float().transpose(-1, -2) * scale
        return F.softmax(scores, dim=-1)


def cdf_counts(sorted_probs: torch.Tensor, tau: float, eps: float = 1e-5) -> torch.Tensor:
    """How many leading sorted blocks have CDF <= τ + eps, as the release computes it
    (sparse-vggt `utils/sparse_wrapper.py` `get_block_mask`): a float32 per-head threshold tensor
    `tau + eps` and `torch.searchsorted(cdf, thr, right=True)`. A Python-scalar comparison would
    round τ + eps to the CDF's dtype (0.40001 → 0.40039 in bf16)."""
    cdf = torch.cumsum(sorted_probs, dim=-1)
    # float32 like the release's per-head tensor; the same τ for every head and query block
    thr = torch.full((*cdf.shape[:-1], 1), float(tau), device=cdf.device) + eps
    return torch.searchsorted(cdf, thr, right=True).squeeze(-1)


def select_blocks(probs: torch.Tensor, opts: BlockSparseOptions) -> torch.Tensor:
    """Boolean selection `[.., K_p]` from pooled probabilities: n = max(n_cdf(τ), ⌊K_p(1 − ρ)⌋),
    at least `min_blocks` (the release: n = 0 becomes 1), the n most probable blocks kept."""
    k_p = probs.shape[-1]
    order = torch.sort(probs, dim=-1, descending=True, stable=True)  # ties: lower block first
    counts = []
    if opts.tau is not None:
        counts.append(cdf_counts(order.values, opts.tau))
    if opts.rho is not None:
        counts.append(torch.full(probs.shape[:-1], int(k_p * (1 - opts.rho)), device=probs.device))
    if opts.topk is not None:
        counts.append(torch.full(probs.shape[:-1], min(opts.topk, k_p), device=probs.device))
    n = torch.stack(counts).amax(0).clamp(min=opts.min_blocks, max=k_p)
    rank = torch.arange(k_p, device=probs.device)
    chosen = rank < n[..., None]  # in sorted order
    return torch.zeros_like(chosen).scatter(-1, order.indices, chosen)


def block_mask(
    q_patch: torch.Tensor, k_patch: torch.Tensor, geo: Geometry, opts: BlockSparseOptions
) -> torch.Tensor:
    """Full block mask `[B, H, Q_b, K_tot]`: selected patch blocks plus the always-on sinks."""
    if opts.score_fp32:
        q_patch, k_patch = q_patch.float(), k_patch.float()
    q_bar = pool_blocks(q_patch, opts.q_block, opts.pool_mode)
    k_bar = pool_blocks(k_patch, opts.k_block, opts.pool_mode)
    scale = 1 / math.sqrt(q_patch.shape[-1])
    chunk = opts.selection_chunk if opts.chunked_selection else geo.q_blocks
    parts = []
    for c0 in range(0, geo.q_blocks, chunk):
        probs = block_probabilities(q_bar[:, :, c0 : c0 + chunk], k_bar, scale, opts)
        parts.append(select_blocks(probs, opts))
    patch = torch.cat(parts, dim=2)
    sinks = patch.new_ones(*patch.shape[:-1], geo.k_blocks - geo.k_patch_blocks)
    return torch.cat((patch, sinks), dim=-1)


def _key_sequence(k_patch, k_special, geo: Geometry) -> torch.Tensor:
    pad = geo.patch_key_len - geo.t_p
    if pad:
        k_patch = F.pad(k_patch, (0, 0, 0, pad))
    return torch.cat((k_patch, k_special), dim=-2)


def _key_valid(geo: Geometry, device) -> torch.Tensor:
    """Which positions of the concatenated key sequence are real keys (not padding)."""
    valid = torch.ones(geo.key_len, dtype=torch.bool, device=device)
    valid[geo.t_p : geo.patch_key_len] = False
    return valid


def gather_attention(q_patch, keys, values, mask, geo: Geometry, opts) -> torch.Tensor:
    """Exact softmax over the gathered selected blocks, chunked over query blocks."""
    b, h, _, d = q_patch.shape
    qb, kb = opts.q_block, opts.k_block
    pad_q = geo.q_blocks * qb - geo.t_p
    q = F.pad(q_patch, (0, 0, 0, pad_q)).view(b, h, geo.q_blocks, qb, d)
    key_pad = geo.k_blocks * kb - geo.key_len
    keys = F.pad(keys, (0, 0, 0, key_pad))
    values = F.pad(values, (0, 0, 0, key_pad))
    real = F.pad(_key_valid(geo, q.device), (0, key_pad), value=False)
    out = q.new_empty(b, h, geo.q_blocks, qb, d)
    offsets = torch.arange(kb, device=q.device)
    c0 = 0
    while c0 < geo.q_blocks:
        n_max = int(mask[:, :, c0:].sum(-1).max())
        chunk = max(1, min(geo.q_blocks - c0, GATHER_KEYS_PER_CHUNK // (n_max * kb * qb // 64 + 1)))
        m = mask[:, :, c0 : c0 + chunk]
        n_max = int(m.sum(-1).max())
        sel = torch.sort(m.to(torch.int8), dim=-1, descending=True, stable=True).indices[
            ..., :n_max
        ]
        sel_ok = m.gather(-1, sel)  # [b, h, c, n]
        tokens = (sel[..., None] * kb + offsets).reshape(b, h, -1)  # [b, h, c*n*kb]
        ok = (sel_ok[..., None] & real[tokens.view(*sel.shape, kb)]).reshape(
            b, h, m.shape[2], 1, -1
        )
        k_g = keys.gather(2, tokens[..., None].expand(-1, -1, -1, d)).view(b, h, m.shape[2], -1, d)
        v_g = values.gather(2, tokens[..., None].expand(-1, -1, -1, d)).view(
            b, h, m.shape[2], -1, d
        )
        rows = b * h * m.shape[2]  # 4-D views: 5-D inputs drop SDPA to the unfused math path
        out[:, :, c0 : c0 + chunk] = F.scaled_dot_product_attention(
            q[:, :, c0 : c0 + chunk].reshape(rows, 1, qb, d),
            k_g.reshape(rows, 1, -1, d),
            v_g.reshape(rows, 1, -1, d),
            attn_mask=ok.reshape(rows, 1, 1, -1),
        ).view(b, h, m.shape[2], qb, d)
        c0 += chunk
    return out.view(b, h, -1, d)[:, :, : geo.t_p]


def masked_dense_attention(q_patch, keys, values, mask, geo: Geometry, opts) -> torch.Tensor:
    """The same mask expanded to token resolution and one explicit softmax (tiny T only)."""
    rows = torch.arange(geo.t_p, device=q_patch.device) // opts.q_block
    cols = torch.arange(geo.key_len, device=q_patch.device) // opts.k_block
    allowed = mask[:, :, rows][..., cols] & _key_valid(geo, q_patch.device)
    scores = q_patch @ keys.transpose(-1, -2) / math.sqrt(q_patch.shape[-1])
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ values


def flex_block_mask(mask: torch.Tensor, geo: Geometry, opts: BlockSparseOptions):
    """The FlexAttention `BlockMask` of a block selection `[B, H, Q_b, K_tot]`: the selected key
    blocks of each query block, and a token-level `mask_mod` that drops the query/key padding."""
    from torch.nn.attention.flex_attention import BlockMask

    valid = _key_valid(geo, mask.device)
    t_p, key_len = geo.t_p, geo.key_len

    def bounds(b, h, q_idx, kv_idx):
        return (q_idx < t_p) & (kv_idx < key_len) & valid[kv_idx.clamp(max=key_len - 1)]

    order = torch.sort(mask.to(torch.int32), dim=-1, descending=True, stable=True)
    return BlockMask.from_kv_blocks(
        mask.sum(-1).to(torch.int32),
        order.indices.to(torch.int32),
        BLOCK_SIZE=(opts.q_block, opts.k_block),
        mask_mod=bounds,
        seq_lengths=(t_p, key_len),
    )


def flex_attention_blocks(q_patch, keys, values, mask, geo: Geometry, opts) -> torch.Tensor:
    """FlexAttention over the selected blocks, always under torch.compile: eager FlexAttention
    applies the `mask_mod` to every score but not the block selection, so it would silently run
    dense (seen on CPU with torch 2.13; tests/test_gpu_kernels.py)."""
    from torch.nn.attention.flex_attention import flex_attention

    block = flex_block_mask(mask, geo, opts)
    compiled = _compiled_flex(flex_attention)
    return compiled(q_patch, keys, values, block_mask=block)


_FLEX: dict[str, Any] = {}


def _compiled_flex(fn):
    if "fn" not in _FLEX:
        _FLEX["fn"] = torch.compile(fn, dynamic=False)
    return _FLEX["fn"]


EXECUTORS = {
    "gather": gather_attention,
    "masked_dense": masked_dense_attention,
    "flex": flex_attention_blocks,
}


class BlockSparseMixer:
    """The block-sparse token mixer of one global layer."""

    def __init__(self, opts: BlockSparseOptions, policy: str = "default") -> None:
        self.opts = opts
        self.policy = policy
        self.last: dict[str, Any] = {}
        self.force_dense_blocks = False  # time the same kernel with every block selected

    def kernel(self, device: torch.device) -> str:
        if self.opts.kernel != "auto":
            return self.opts.kernel
        return "flex" if device.type == "cuda" else "gather"

    def __call__(self, q, k, v, ctx: AttentionContext) -> torch.Tensor:
        geo = geometry(ctx.layout, self.opts, q.device)
        q_p, k_p, v_p = (t[:, :, geo.patch_idx] for t in (q, k, v))
        mask = block_mask(q_p, k_p, geo, self.opts)
        if self.force_dense_blocks:
            mask = torch.ones_like(mask)
        keys = _key_sequence(k_p, k[:, :, geo.special_idx], geo)
        values = _key_sequence(v_p, v[:, :, geo.special_idx], geo)
        kernel = self.kernel(q.device)
        patch_out = EXECUTORS[kernel](q_p, keys, values, mask, geo, self.opts)
        out = torch.empty_like(q)
        out[:, :, geo.patch_idx] = patch_out.to(q.dtype)
        out[:, :, geo.special_idx] = sdpa(q[:, :, geo.special_idx], k, v, self.policy)
        patch_blocks = mask[..., : geo.k_patch_blocks]
        self.last = {
            "rho": self.opts.rho,
            "tau": self.opts.tau,
            "sparsity": 1.0 - float(mask.float().mean()),
            "patch_sparsity": 1.0 - float(patch_blocks.float().mean()),
            "q_blocks": geo.q_blocks,
            "k_blocks": geo.k_blocks,
            "sink_blocks": geo.k_blocks - geo.k_patch_blocks,
            "kernel": kernel,
        }
        return out


@ROUTES.register("block_sparse", "block-sparse global attention (FasterVGGT / Sparse-VGGT)")
class BlockSparseRoute(Route):
    name = "block_sparse"
    report_facts: ClassVar[dict[str, str]] = {"sparsity": "block sparsity"}

    def __init__(self, spec: RouteSpec, policy: str = "default") -> None:
        super().__init__(spec)
        self.options = BlockSparseOptions.from_params(spec.params)
        self.mixer = BlockSparseMixer(self.options, policy)

    def run(self, block, x, pos, layout: TokenLayout) -> torch.Tensor:
        return block(x, pos, layout, self.mixer)

    def describe(self, layout: TokenLayout) -> dict[str, Any]:
        return dict(self.mixer.last)

    def cost(self, layout: TokenLayout, dim: int, observed: dict | None = None) -> GlobalLayerCost:
        opts = self.options
        geo = geometry(layout, opts, "cpu")
        t = layout.num_tokens
        if observed and "patch_sparsity" in observed:
            sparsity, source = observed["patch_sparsity"], "realised"
        else:  # before any forward: the cap rho bounds the sparsity from above
            sparsity, source = (opts.rho or 0.0), "rho cap (upper bound)"
        kept_patch_keys = (1.0 - sparsity) * geo.k_patch_blocks * opts.k_block
        sink_keys = (geo.k_blocks - geo.k_patch_blocks) * opts.k_block  # block-granular
        attn = attention_core_macs(geo.t_s, t, dim)  # special queries attend densely
        attn += int(2 * geo.t_p * (kept_patch_keys + sink_keys) * dim)
        scores = geo.q_blocks * geo.k_patch_blocks * dim
        info = {"patch_sparsity": sparsity, "sparsity_source": source}
        return GlobalLayerCost(str(self.spec), linear_macs(t, dim), attn, scores, info)

    def reference(self, q, k, v, ctx: AttentionContext) -> torch.Tensor:
        """The same block selection expanded to token resolution, one explicit softmax."""
        mixer = BlockSparseMixer(replace(self.options, kernel="masked_dense"))
        return mixer(q, k, v, ctx)

    def microbenchmark(
        self, layout, heads, head_dim, device, dtype, warmup: int = 1, repeats: int = 3
    ) -> dict[str, Any] | None:
        """One block-sparse layer three ways: the sparse selection through its kernel, every
        block selected through the same kernel, and dense SDPA (the parent's kernel)."""
        q, k, v = random_qkv(layout.num_tokens, heads, head_dim, device, dtype)
        ctx = AttentionContext(layout=layout)
        mixer = self.mixer
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
            "route": str(self),
            "tokens": layout.num_tokens,
            "kernel": realised.get("kernel"),
            "random_input_sparsity": realised.get("sparsity"),
            "sparse_s": sparse.median_s,
            "dense_same_kernel_s": same.median_s,
            "dense_sdpa_s": dense.median_s,
            "sparsity_speedup": same.median_s / sparse.median_s,
            "end_to_end_speedup": dense.median_s / sparse.median_s,
            "columns": {"gather kernel dense / SDPA": same.median_s / dense.median_s},
        }


# (rho, tau) per model family: the published settings closest to each sparsity label
SETTINGS = {
    "bsa_s8": {"vggt": (0.10, 0.97), "pi3": (0.10, 0.97)},
    "bsa_s25": {"vggt": (0.50, 0.90), "pi3": (0.60, 0.93)},
    "bsa_s50": {"vggt": (0.50, 0.40), "pi3": (0.50, 0.40)},
    "bsa_s75": {"vggt": (0.80, 0.40), "pi3": (0.80, 0.50)},
}
SWITCHES = tuple(f.name for f in fields(BlockSparseOptions) if f.name not in ("rho", "tau"))


def block_sparse_routes(cfg, family: str, num_layers: int) -> list[str]:
    """`block_sparse` on every global layer; (ρ, τ) from `level` per family, or explicit."""
    level = cfg.get("level")
    if level is not None:
        if level not in SETTINGS:
            raise ConfigError(f"level={level!r}; valid: {', '.join(SETTINGS)}")
        rho, tau = SETTINGS[level].get(family, SETTINGS[level]["vggt"])
    else:
        rho, tau = cfg.get("rho"), cfg.get("tau")
    params = {"rho": rho, "tau": tau, **{k: cfg[k] for k in SWITCHES if k in cfg}}
    opts = BlockSparseOptions.from_params(params)
    return [str(RouteSpec("block_sparse", opts.route_params()))] * num_layers


def _register() -> None:
    from avggt_bench.attention.config import METHODS

    METHODS.add("block_sparse", block_sparse_routes, "block-sparse global attention")


_register()
