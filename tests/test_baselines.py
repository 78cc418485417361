"""FastVGGT token merging and block-sparse attention against the releases they reproduce.

Block-sparse selection: sparse-vggt (github.com/brianwang00001/sparse-vggt)
`src/sparse_vggt/models/attention.py` `predict_attention` (pooling, scores) and
`src/sparse_vggt/utils/sparse_wrapper.py` `get_block_mask` (CDF threshold), with the fill kernel
`triton_fill_block_map_kernel` of its SpargeAttn fork (github.com/brianwang00001/SpargeAttn,
`spas_sage_attn/utils.py`).
"""

import pytest
import torch

from avggt_bench.attention.base import AttentionContext
from avggt_bench.attention.config import resolve_routes
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.methods.block_sparse import (
    BlockSparseMixer,
    BlockSparseOptions,
    block_mask,
    geometry,
    pool_blocks,
    select_blocks,
)
from avggt_bench.attention.methods.fastvggt import (
    MergeOptions,
    _cell_draws,
    match,
    merge_reference,
    partition,
    reduce_tokens,
    reduced_length,
    restore_tokens,
)
from avggt_bench.attention.routes import build_route, parse_route, softmax_attention
from avggt_bench.errors import ConfigError
from avggt_bench.flops import vggt_cost
from avggt_bench.models import build_model
from avggt_bench.models.vggt.model import VGGT_1B

# --- FastVGGT -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frames, dst, src, protected, length",
    [
        (2, 1298, 784, 208, 1506),
        (10, 3354, 7056, 1041, 4395),
        (100, 26484, 77616, 10410, 36894),
        (1000, 257784, 783216, 104100, 361884),
    ],
)
def test_partition_sizes_match_the_spec_table(frames, dst, src, protected, length):
    n = reduced_length(TokenLayout(frames, (28, 37), 5, True), MergeOptions())
    assert (n["dst"], n["src"], n["protected"], n["length"]) == (dst, src, protected, length)


def test_partition_on_a_hand_checked_layout():
    layout = TokenLayout(2, (2, 3), 5, True)  # P = 11, T = 22, one 2x2 cell per frame
    part = partition(layout, MergeOptions())
    r = int(_cell_draws(layout, MergeOptions(), torch.device("cpu"))[0, 0, 0])
    dst = set(torch.nonzero(part.dst).squeeze(1).tolist())
    # frame 0 whole, specials of frame 1, and the cell's pick at the *effective* 2x2 grid's flat
    # index written as a slot of the 2x3 grid (the `aligned_grid` quirk): e = (r // 2) * 2 + r % 2
    e = (r // 2) * 2 + r % 2
    assert dst == set(range(11)) | {11, 12, 13, 14, 15} | {11 + 5 + e}
    # Π: n_p = floor(0.1 * 22) = 2, step = 11 -> tokens 0 and 11 (both dst here)
    assert torch.nonzero(part.protected).squeeze(1).tolist() == [0, 11]
    aligned = partition(layout, MergeOptions(aligned_grid=True))
    row, col = r // 2, r % 2
    assert set(torch.nonzero(aligned.dst).squeeze(1).tolist()) >= {11 + 5 + row * 3 + col}


def test_dst_pattern_is_seeded_identical_across_layers_and_runs():
    layout = TokenLayout(6, (8, 11), 5, True)
    a, b = partition(layout, MergeOptions()), partition(layout, MergeOptions())
    assert a.pattern_hash == b.pattern_hash and torch.equal(a.dst, b.dst)
    assert partition(layout, MergeOptions(seed=34)).pattern_hash != a.pattern_hash


def test_aligned_grid_puts_one_dst_in_every_true_2x2_cell():
    layout = TokenLayout(3, (4, 6), 5, True)
    dst = partition(layout, MergeOptions(aligned_grid=True)).dst.view(3, -1)[1:, 5:].view(2, 4, 6)
    cells = dst.view(2, 2, 2, 3, 2).permute(0, 1, 3, 2, 4).reshape(2, 6, 4)
    assert (cells.sum(-1) == 1).all()


def random_qkvx(layout, heads=2, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = layout.num_tokens
    x = torch.randn(t, 16, generator=g)
    q, k, v = (torch.randn(1, heads, t, d, generator=g) for _ in range(3))
    return x, q, k, v


@pytest.mark.parametrize("grid", [(4, 5), (5, 7)])  # (5, 7): odd width, the flat-slot quirk
@pytest.mark.parametrize("ratio", [0.9, 0.5, 0.3, 0.2])
def test_fast_merge_equals_the_loop_reference(ratio, grid):
    layout = TokenLayout(3, grid, 5, True)
    opts = MergeOptions(merge_ratio=ratio)
    x, q, k, v = random_qkvx(layout)
    part = partition(layout, opts)
    plan = match(x, part, opts)
    fast = restore_tokens(softmax_attention(*(reduce_tokens(t, plan) for t in (q, k, v))), plan)
    per_frame = layout.tokens_per_frame
    dst_slots = [
        {t for t in torch.nonzero(part.dst).squeeze(1).tolist() if t // per_frame == f}
        for f in range(3)
    ]
    protected = torch.nonzero(part.protected).squeeze(1).tolist()
    slow = merge_reference(x, q[0], k[0], v[0], dst_slots, protected, ratio)
    torch.testing.assert_close(fast[0], slow, rtol=1e-5, atol=1e-5)


def test_unmerge_with_identity_attention_copies_as_specified():
    layout = TokenLayout(3, (4, 5), 5, True)
    opts = MergeOptions(merge_ratio=0.5)
    x, _, _, v = random_qkvx(layout)
    part = partition(layout, opts)
    plan = match(x, part, opts)
    out = restore_tokens(reduce_tokens(v, plan), plan)  # attention replaced by o = v
    merged_mean = reduce_tokens(v, plan)[:, :, plan.unmerged_idx.numel() :][
        :, :, : plan.dst_idx.numel()
    ]
    for t in plan.protected_idx.tolist():
        assert torch.equal(out[:, :, t], v[:, :, t])  # protected: its raw v
    for i, t in enumerate(plan.dst_idx.tolist()):
        if t not in set(plan.protected_idx.tolist()):
            assert torch.equal(out[:, :, t], merged_mean[:, :, i])  # dst: the dst' mean
    for t, i in zip(plan.merged_idx.tolist(), plan.merged_into.tolist()):
        assert torch.equal(out[:, :, t], merged_mean[:, :, i])  # merged src: its dst's mean
    for t in plan.unmerged_idx.tolist():
        assert torch.equal(out[:, :, t], v[:, :, t])  # unmerged: its own v


def test_ratios_above_the_valid_fraction_give_identical_outputs(vggt_small):
    block = vggt_small.global_block(3)
    layout = TokenLayout(4, (4, 6), 5, True)
    x = torch.randn(1, layout.num_tokens, 384, generator=torch.Generator().manual_seed(1))
    pos = torch.zeros(1, layout.num_tokens, 2, dtype=torch.long)
    n = reduced_length(layout, MergeOptions())
    valid_fraction = (n["src"] - 9) / layout.num_tokens  # conservative
    assert valid_fraction < 0.7
    with torch.no_grad():
        a = build_route("merge(merge_ratio=0.9)").run(block, x, pos, layout)
        b = build_route("merge(merge_ratio=0.7)").run(block, x, pos, layout)
    assert torch.equal(a, b)


def test_noop_single_frame_and_fix_flags(vggt_small):
    block = vggt_small.global_block(2)
    dense_route = build_route("global")
    for frames in (1, 3):
        layout = TokenLayout(frames, (4, 6), 5, True)
        x = torch.randn(1, layout.num_tokens, 384, generator=torch.Generator().manual_seed(frames))
        pos = torch.zeros(1, layout.num_tokens, 2, dtype=torch.long)
        with torch.no_grad():
            dense = dense_route.run(block, x, pos, layout)
            noop = build_route("merge(merge_ratio=0.0)").run(block, x, pos, layout)
            assert torch.equal(noop, dense)  # r = 0: the dense block
            if frames == 1:
                official = build_route("merge(merge_ratio=0.9)").run(block, x, pos, layout)
                assert not torch.allclose(official, dense)  # official: Π still appended
                guarded = build_route("merge(merge_ratio=0.9,single_frame_guard=1)")
                assert torch.equal(guarded.run(block, x, pos, layout), dense)
    layout = TokenLayout(3, (4, 6), 5, True)
    n = reduced_length(layout, MergeOptions(dedup_protected=True))
    part = partition(layout, MergeOptions())
    assert n["length"] == n["unmerged"] + int((part.dst | part.protected).sum())


def test_merge_route_records_compression_and_runs_in_the_model():
    model = build_model("vggt_small", attention="fastvggt")
    assert model.route_strings == ["merge(merge_ratio=0.9)"] * 24
    with torch.inference_mode():
        pred = model(torch.rand(1, 3, 3, 42, 56))
    assert pred.depth.shape == (1, 3, 42, 56, 1)
    info = model.routes[5].describe(None)
    assert info["length"] < info["tokens"] and len(info["dst_pattern_hash"]) == 16
    clean = resolve_routes("fastvggt_clean", "vggt", 24)[0]
    assert "aligned_grid=1" in clean and "dedup_protected=1" in clean


def test_fastvggt_bad_configs():
    with pytest.raises(ConfigError, match=r"merge_ratio=1.0 must be in \[0, 1\)"):
        build_route("merge(merge_ratio=1.0)")
    with pytest.raises(ConfigError, match="supports VGGT only"):
        resolve_routes("fastvggt", "pi3", 18)
    assert resolve_routes({"name": "fastvggt", "allow_pi3_port": True}, "pi3", 18)[0].startswith(
        "merge"
    )
    # a grid smaller than the merge cell: no sampled dst, no crash (documented fallback)
    assert reduced_length(TokenLayout(3, (1, 5), 5, True), MergeOptions())["dst"] == 10 + 2 * 5


def test_fastvggt_cost_rows():
    cost = vggt_cost(VGGT_1B, 1000, 28, 37, resolve_routes("fastvggt", "vggt", 24))
    g = cost.global_layers[0]
    assert g.info["length"] == 361_884
    assert g.extra / 1e14 == pytest.approx(2.07, abs=0.01)  # matching ≈ 2.1e14
    assert g.attention / 1e14 == pytest.approx(2.68, abs=0.01)  # reduced attention ≈ 2.7e14


# --- block-sparse -------------------------------------------------------------------------


def test_selection_worked_examples():
    probs = torch.tensor([[0.5, 0.3, 0.2]])

    def picks(**kw):
        return select_blocks(probs, BlockSparseOptions(**{"rho": None, "tau": None, **kw})).tolist()

    assert picks(tau=0.8) == [[True, True, False]]  # cdf (0.5, 0.8, 1.0): n_cdf = 2
    assert picks(tau=0.8, rho=0.9) == [[True, True, False]]  # n_rho = 0, n = max = 2
    assert picks(tau=0.7) == [[True, False, False]]
    assert picks(tau=0.8 - 0.5e-5) == [[True, True, False]]  # the +1e-5 tolerance
    assert picks(rho=0.5) == [[True, False, False]]  # floor(3 * 0.5) = 1
    # the release's fill kernel turns n = 0 into 1 (`n = n + 1 if n == 0`); 0 only on request
    assert picks(tau=0.3) == [[True, False, False]]
    assert picks(tau=0.3, min_blocks=0) == [[False, False, False]]
    ties = select_blocks(
        torch.tensor([[0.25, 0.25, 0.25, 0.25]]), BlockSparseOptions(rho=0.5, tau=None)
    )
    assert ties.tolist() == [[True, True, False, False]]  # ties: lower block index first


def test_pooling_averages_only_real_members_of_the_last_block():
    x = torch.arange(10.0)[:, None].repeat(1, 2)
    pooled = pool_blocks(x, 4)
    assert pooled[:, 0].tolist() == [1.5, 5.5, 8.5]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("block", [128, 64])
def test_pooling_is_the_release_avg_pool1d_bit_for_bit(dtype, block):
    """`predict_attention` pools `[B, nh, T, C]` rearranged to `[(B nh), C, T]` with
    `F.avg_pool1d(kernel_size=ks, ceil_mode=True)`; T = 3·(11·13) = 429 is no multiple of 64 or
    128, so the last block is partial (its mean covers its real members only)."""
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(2, 3, 429, 64, generator=g) * 3 + 1).to(dtype)
    b, nh, t, c = x.shape
    release = torch.nn.functional.avg_pool1d(
        x.permute(0, 1, 3, 2).reshape(b * nh, c, t), kernel_size=block, ceil_mode=True
    )
    release = release.reshape(b, nh, c, -1).permute(0, 1, 3, 2)
    ours = pool_blocks(x, block)
    assert ours.dtype == dtype and ours.shape == release.shape
    assert torch.equal(ours, release)
    last = x[:, :, (t // block) * block :].double().mean(-2)
    torch.testing.assert_close(ours[:, :, -1].double(), last, rtol=1e-2, atol=1e-2)


def test_all_zero_query_row_under_tau_only_keeps_one_block():
    """A zero query block scores every key block equally (uniform probabilities 1/K): no prefix
    of the CDF reaches τ = 0.05 + 1e-5 when K = 8, so searchsorted gives 0 and the release's fill
    kernel keeps one block (the first of the equal ones here)."""
    layout = TokenLayout(2, (4, 8), 5, True)  # T_p = 64 = 4 query blocks of 16, 8 key blocks of 8
    q, k, _ = qkv(layout, seed=1, dtype=torch.float32)
    opts = BlockSparseOptions(rho=None, tau=0.05, q_block=16, k_block=8)
    geo = geometry(layout, opts, "cpu")
    q_p = q[:, :, geo.patch_idx].clone()
    q_p[:, :, :16] = 0.0  # query block 0 is all zero
    mask = block_mask(q_p, k[:, :, geo.patch_idx], geo, opts)[..., : geo.k_patch_blocks]
    assert mask[:, :, 0].sum(-1).tolist() == [[1, 1]]
    assert mask[:, :, 0, 0].all()
    zero = block_mask(
        q_p,
        k[:, :, geo.patch_idx],
        geo,
        BlockSparseOptions(
            **{"rho": None, "tau": 0.05, "q_block": 16, "k_block": 8, "min_blocks": 0}
        ),
    )
    assert zero[:, :, 0, : geo.k_patch_blocks].sum().item() == 0


def test_cdf_threshold_is_a_float32_tensor_as_the_release_builds_it():
    """`get_block_mask`: `hyperparameter_check(τ)` (float32 `torch.full`) + 1e-5, then
    `torch.searchsorted(cdf, thr, right=True)`. With a bf16 CDF whose second entry is bf16(0.4) =
    0.400390625, τ = 0.4 keeps one block; comparing with the Python scalar 0.40001 rounds it to
    bf16 (0.400390625) and would keep two."""
    vals = [0.25, 0.150390625, 0.150390625, 0.150390625, 0.150390625, 0.1484375]
    probs = torch.tensor(vals, dtype=torch.bfloat16).view(1, 1, 1, -1)
    cdf = torch.cumsum(probs, dim=-1)  # already in descending order
    assert cdf[0, 0, 0, 1].item() == 0.400390625
    release_thr = (torch.full((1,), 0.4) + 1e-5).view(1, 1, 1, 1)
    release_n = torch.searchsorted(cdf, release_thr, right=True).squeeze(-1)
    scalar_n = (cdf <= 0.4 + 1e-5).sum(-1)
    assert release_n.item() == 1 and scalar_n.item() == 2
    picked = select_blocks(probs, BlockSparseOptions(rho=None, tau=0.4))
    assert picked.tolist() == [[[[True, False, False, False, False, False]]]]
    # the same with the τ-count alone, min_blocks=0 (nothing else could raise the count)
    zero = BlockSparseOptions(rho=None, tau=0.4, min_blocks=0)
    assert select_blocks(probs, zero).sum().item() == 1


def qkv(layout, seed=0, dtype=torch.float64, heads=2, d=16):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, heads, layout.num_tokens, d, generator=g, dtype=dtype) for _ in range(3)]


def run_mixer(opts, layout, q, k, v):
    mixer = BlockSparseMixer(opts)
    return mixer(q, k, v, AttentionContext(layout)), mixer


@pytest.mark.parametrize("frames", [1, 2, 3, 10])
@pytest.mark.parametrize("pad", [False, True])
def test_gather_kernel_equals_masked_dense(frames, pad):
    layout = TokenLayout(frames, (4, 5), 5, True)
    for rho, tau in [(0.5, 0.5), (0.2, 0.9), (None, 0.3)]:
        q, k, v = qkv(layout, seed=frames)
        common = dict(rho=rho, tau=tau, q_block=16, k_block=8, pad_patch_keys=pad)
        a, _ = run_mixer(BlockSparseOptions(**common, kernel="gather"), layout, q, k, v)
        b, _ = run_mixer(BlockSparseOptions(**common, kernel="masked_dense"), layout, q, k, v)
        assert (a - b).abs().max().item() <= 1e-12


def test_rho_zero_keeps_every_block_and_equals_dense():
    layout = TokenLayout(3, (8, 11), 5, True)
    q, k, v = qkv(layout, dtype=torch.float32, d=64)
    out, mixer = run_mixer(BlockSparseOptions(rho=0.0, tau=1.0), layout, q, k, v)
    dense = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert (out - dense).abs().max().item() <= 1e-5 * dense.abs().max().item()
    assert mixer.last["sparsity"] == 0.0


def test_special_queries_are_dense_and_sparsity_counts_sinks():
    layout = TokenLayout(10, (4, 5), 5, True)
    q, k, v = qkv(layout)
    opts = BlockSparseOptions(rho=0.5, tau=0.5, q_block=16, k_block=8)
    out, mixer = run_mixer(opts, layout, q, k, v)
    geo = geometry(layout, opts, "cpu")
    dense = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    # two different SDPA calls (all queries vs the special ones): equal up to round-off only
    torch.testing.assert_close(
        out[:, :, geo.special_idx], dense[:, :, geo.special_idx], rtol=1e-12, atol=1e-12
    )
    mask = block_mask(q[:, :, geo.patch_idx], k[:, :, geo.patch_idx], geo, opts)
    assert mixer.last["sparsity"] == pytest.approx(1 - mask.float().mean().item())
    assert mask[..., geo.k_patch_blocks :].all()  # sinks always selected
    unchunked = block_mask(
        q[:, :, geo.patch_idx],
        k[:, :, geo.patch_idx],
        geo,
        BlockSparseOptions(rho=0.5, tau=0.5, q_block=16, k_block=8, selection_chunk=2),
    )
    assert torch.equal(mask, unchunked)


def test_boundary_quirk_and_its_fix():
    layout = TokenLayout(3, (3, 5), 5, True)  # T_p = 45, 45 mod 8 = 5: block 5 holds 3 specials
    q, k, v = qkv(layout, seed=3)
    opts = dict(rho=None, tau=0.2, q_block=16, k_block=8)
    geo = geometry(layout, BlockSparseOptions(**opts), "cpu")
    assert geo.t_p % 8 != 0
    official = block_mask(
        q[:, :, geo.patch_idx], k[:, :, geo.patch_idx], geo, BlockSparseOptions(**opts)
    )
    last_patch_block = official[..., geo.k_patch_blocks - 1]
    assert (~last_patch_block).any()  # some query block does not select it
    # those query blocks give zero weight to the first special keys: perturbing them changes nothing
    first_specials = geo.special_idx[: 8 - geo.t_p % 8]
    v2 = v.clone()
    v2[:, :, first_specials] += 100.0
    a, _ = run_mixer(BlockSparseOptions(**opts), layout, q, k, v)
    b, _ = run_mixer(BlockSparseOptions(**opts), layout, q, k, v2)
    rows = torch.nonzero(~last_patch_block[0, 0]).squeeze(1)
    q_rows = geo.patch_idx[
        (rows[:, None] * 16 + torch.arange(16)).clamp(max=geo.t_p - 1).reshape(-1)
    ]
    assert torch.equal(a[0, 0, q_rows], b[0, 0, q_rows])
    fixed_a, _ = run_mixer(BlockSparseOptions(**opts, pad_patch_keys=True), layout, q, k, v)
    fixed_b, _ = run_mixer(BlockSparseOptions(**opts, pad_patch_keys=True), layout, q, k, v2)
    assert (fixed_a[0, 0, q_rows] - fixed_b[0, 0, q_rows]).abs().min() > 0  # always attended


def test_block_sparse_presets_route_and_cost():
    assert resolve_routes("bsa_s25", "vggt", 24)[0] == "block_sparse(rho=0.5,tau=0.9)"
    assert resolve_routes("bsa_s25", "pi3", 18)[0] == "block_sparse(rho=0.6,tau=0.93)"
    assert resolve_routes("bsa_s75", "vggt", 24)[0] == "block_sparse(rho=0.8,tau=0.4)"
    route = parse_route(resolve_routes("bsa_s75", "vggt", 24)[0])
    layout = TokenLayout(800, (28, 37), 5, True)
    from avggt_bench.flops import global_layer_cost

    dense = global_layer_cost("global", layout, 1024)
    cap = global_layer_cost(route, layout, 1024)
    seen = global_layer_cost(route, layout, 1024, {"patch_sparsity": 0.5})
    assert cap.info["sparsity_source"].startswith("rho cap") and seen.info["patch_sparsity"] == 0.5
    assert cap.attention < seen.attention < dense.attention
    assert seen.attention / dense.attention == pytest.approx(0.5, abs=0.01)
    with pytest.raises(ConfigError, match="block sizes"):
        build_route("block_sparse(rho=0.5,q_block=100,k_block=64)")
    with pytest.raises(ConfigError, match=r"rho=1.5 must be in \[0, 1\]"):
        build_route("block_sparse(rho=1.5)")


def test_block_sparse_runs_in_both_models():
    for name, attention in [("vggt_small", "bsa_s50"), ("pi3_small", "bsa_s50")]:
        model = build_model(name, attention=attention)
        with torch.inference_mode():
            model(torch.rand(1, 3, 3, 42, 56))
        info = model.routes[-1].describe(None)
        assert 0 <= info["sparsity"] <= 1 and info["kernel"] == "gather"


def test_clean_switch_scores_in_float32_and_plain_presets_are_the_release():
    """`score_fp32` (block_sparse_clean) gives the mask of the float32-upcast inputs; the plain
    presets keep the release's defaults (at least one block, no padding, input-dtype scores)."""
    layout = TokenLayout(3, (7, 9), 5, True)
    q, k, _ = qkv(layout, seed=5, dtype=torch.float32)
    opts = BlockSparseOptions(rho=None, tau=0.4, q_block=16, k_block=8, score_fp32=True)
    geo = geometry(layout, opts, "cpu")
    q_p, k_p = q[:, :, geo.patch_idx].bfloat16(), k[:, :, geo.patch_idx].bfloat16()
    clean = block_mask(q_p, k_p, geo, opts)
    upcast = block_mask(
        q_p.float(), k_p.float(), geo, BlockSparseOptions(rho=None, tau=0.4, q_block=16, k_block=8)
    )
    assert torch.equal(clean, upcast)
    assert "score_fp32=1" in resolve_routes("block_sparse_clean", "vggt", 24)[0]
    for name in ("bsa_s8", "bsa_s25", "bsa_s50", "bsa_s75"):
        route = resolve_routes(name, "vggt", 24)[0]
        assert "min_blocks" not in route and "pad" not in route and "fp32" not in route
    assert BlockSparseOptions().min_blocks == 1
