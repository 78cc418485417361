"""AVGGT routes against their exact references (`attention/reference.py`), and their invariants."""

import copy
import itertools

import pytest
import torch

from avggt_bench.attention.base import AttentionContext
from avggt_bench.attention.config import resolve_attention, resolve_routes
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.lse import BACKENDS, attn_lse
from avggt_bench.attention.methods.avggt import sga_reference
from avggt_bench.attention.methods.g2f import MeanMixer, MeanRoute
from avggt_bench.attention.routes import build_route, parse_route, softmax_attention
from avggt_bench.attention.sga import SGAMixer, SGAOptions, build_kept_set
from avggt_bench.errors import ConfigError
from avggt_bench.flops import vggt_cost
from avggt_bench.models import build_model
from avggt_bench.models.vggt.model import VGGT_1B


def qkv(layout, dtype=torch.float64, batch=2, heads=3, d=8, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, heads, layout.num_tokens, d)
    q, k, v, k0 = (torch.randn(shape, generator=g, dtype=dtype) for _ in range(4))
    return q * scale, k, v, k0


def run_mixer(opts, layout, q, k, v, k0=None):
    mixer = SGAMixer(opts)
    ctx = AttentionContext(layout=layout, k_unrotated=k0)
    return mixer(q, k, v, ctx), mixer


# --- fast path equals the float64 reference, every switch ----------------------------------

SWITCHES = [
    {},
    {"diag": False},
    {"mean": False},
    {"diag": False, "mean": False},
    {"diag_for_kept_queries": True},
    {"mean_scope": "per_frame"},
    {"mean_over": "all_patches"},
    {"mean_key_space": "pre_rope"},
    {"mean_log_count_bias": True},
    {"mean_exclude_self": True},
    {"mean_exclude_self": True, "mean_scope": "per_frame", "mean_log_count_bias": True},
    {"grid_phase": "per_frame"},
    {"grid_anchor": (1, 1)},
    {"stride": (3, 2)},
    {"keep_special": False},
    {"diag": False, "mean_path": "append"},
    {"diag": False, "mean_path": "append", "mean_scope": "per_frame"},
]
CASES = list(itertools.product([1, 2, 3], [(4, 5), (5, 7)], [2, 4, 6, 9], [True, False]))


@pytest.mark.parametrize(
    "switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default"
)
def test_fast_sga_equals_reference_float64(switches):
    for frames, grid, sigma, first in CASES:
        layout = TokenLayout(frames, grid, 5, reference_frame=first)
        opts = SGAOptions(sigma=sigma, keep_first_frame=first, **switches)
        q, k, v, k0 = qkv(layout, seed=frames * 100 + sigma)
        fast, _ = run_mixer(opts, layout, q, k, v, k0)
        ref = sga_reference(q, k, v, layout, opts, k_unrotated=k0)
        tol = 1e-10 * max(1.0, v.abs().max().item())
        assert (fast - ref).abs().max().item() <= tol, (frames, grid, sigma, first)


@pytest.mark.parametrize("kernel", ["cpu_flash", "math"])
@pytest.mark.parametrize("switches", [{}, {"mean_scope": "per_frame", "mean_exclude_self": True}])
def test_fast_sga_equals_reference_float32(kernel, switches):
    for frames, grid, sigma in [(2, (4, 5), 4), (3, (5, 7), 9), (1, (5, 7), 2)]:
        layout = TokenLayout(frames, grid, 5, reference_frame=True)
        opts = SGAOptions(sigma=sigma, kernel=kernel, keep_first_frame=frames > 1, **switches)
        q, k, v, _k0 = qkv(layout, dtype=torch.float32, d=64)
        fast, mixer = run_mixer(opts, layout, q, k, v)
        ref = sga_reference(q.double(), k.double(), v.double(), layout, opts)
        assert mixer.last_backend == kernel
        assert (fast.double() - ref).abs().max().item() <= 1e-5 * max(1.0, v.abs().max().item())


# --- sigma = 1 is dense --------------------------------------------------------------------


def test_sigma_one_without_extras_is_the_dense_layer_bit_for_bit():
    layout = TokenLayout(3, (4, 5), 5, reference_frame=True)
    q, k, v, _ = qkv(layout, dtype=torch.float32, d=64)
    for diag, mean in [(0, 0), (1, 1)]:
        route = build_route(f"sga(sigma=1,diag={diag},mean={mean},keep_first_frame=1)")
        out = route.mixer(q, k, v, AttentionContext(layout))
        assert torch.equal(out, torch.nn.functional.scaled_dot_product_attention(q, k, v))
    # the SGA machinery itself (gather of every key + LSE kernel) agrees to 1e-6
    idx = build_kept_set(layout, SGAOptions(sigma=1)).kept.nonzero().squeeze(1)
    forced, _, _ = attn_lse(q, k[:, :, idx], v[:, :, idx])
    torch.testing.assert_close(forced, softmax_attention(q, k, v), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("extras", ["diag=1,mean=1", "diag=0,mean=0"])
def test_identity_configuration_reproduces_dense_exactly(vggt_small, extras):
    x = torch.rand(1, 3, 3, 28, 42, generator=torch.Generator().manual_seed(1))
    model = build_model(
        "vggt_small",
        attention={
            "name": "avggt",
            "t_early": 0,
            "sigma": 1,
            "diag": "diag=1" in extras,
            "mean_fill": "mean=1" in extras,
        },
    )
    assert model.route_strings[0].startswith("sga(sigma=1")
    with torch.inference_mode():
        fast, dense = model(x), vggt_small(x)
    for name in ("pose_enc", "depth", "world_points", "world_points_conf"):
        assert torch.equal(fast[name], dense[name]), name


# --- G2F equals per-frame runs -------------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_frame_route_equals_running_the_block_on_each_frame(vggt_small, dtype, tol):
    block = copy.deepcopy(vggt_small.aggregator.global_blocks[5]).to(dtype)
    layout = TokenLayout(3, (2, 3), 5, reference_frame=True)
    from avggt_bench.models.rope import patch_positions

    pos = patch_positions(3, 2, 3, 5, torch.device("cpu")).reshape(1, -1, 2)
    x = torch.randn(
        1, layout.num_tokens, 384, dtype=dtype, generator=torch.Generator().manual_seed(2)
    )
    with torch.no_grad():
        routed = build_route("frame").run(block, x, pos, layout)
        per = layout.tokens_per_frame
        loop = torch.cat(
            [
                block(x[:, f * per : (f + 1) * per], pos[:, :per], layout.per_frame())
                for f in range(3)
            ],
            dim=1,
        )
        dense = build_route("global").run(block, x, pos, layout)
    torch.testing.assert_close(routed, loop, rtol=tol, atol=tol)
    assert not torch.allclose(routed, dense, atol=1e-3)  # the route really changes the mixing


# --- kept-set invariants -------------------------------------------------------------------


@pytest.mark.parametrize("sigma, per_frame", [(2, 532), (4, 266), (6, 182), (9, 130)])
def test_kept_set_invariants_on_the_518x392_grid(sigma, per_frame):
    s, grid = 6, (28, 37)
    for first in (True, False):
        layout = TokenLayout(s, grid, 5, reference_frame=first)
        ks = build_kept_set(layout, SGAOptions(sigma=sigma, keep_first_frame=first))
        kept = ks.kept.view(s, -1)
        assert kept[:, :5].all()  # every special token
        counts = kept[:, 5:].sum(1).tolist()
        assert counts[1:] == [per_frame] * (s - 1)
        assert counts[0] == (1036 if first else per_frame)
        idx = ks.kept.nonzero().squeeze(1)
        assert torch.equal(idx, torch.unique(idx))  # ascending and unique
        p = 1041
        expected = p + (s - 1) * (5 + per_frame) if first else s * (5 + per_frame)
        assert idx.numel() == expected
        assert torch.equal(ks.dropped, ~ks.kept)  # specials kept, so δ_i = 1 ⇔ i ∉ 𝒦


def test_grid_rule_keeps_the_top_left_of_each_window():
    layout = TokenLayout(2, (4, 5), 5, reference_frame=False)
    ks = build_kept_set(layout, SGAOptions(sigma=6))  # (s_h, s_w) = (2, 3)
    grid = ks.kept.view(2, -1)[1, 5:].view(4, 5)
    expected = torch.zeros(4, 5, dtype=torch.bool)
    expected[0::2, 0::3] = True
    assert torch.equal(grid, expected)  # partial windows keep their top-left patch


# --- G2M -----------------------------------------------------------------------------------


def test_g2m_outputs_the_mean_value_whatever_q_and_k():
    layout = TokenLayout(3, (2, 3), 5, reference_frame=True)
    q, k, v, _ = qkv(layout, dtype=torch.float32)
    out = MeanMixer()(q, k, v, AttentionContext(layout))
    patches = v.view(2, 3, 3, 11, 8)[:, :, :, 5:]
    v_bar = patches.mean((2, 3))
    torch.testing.assert_close(out, v_bar[:, :, None].expand_as(out), rtol=1e-6, atol=1e-6)
    again = MeanMixer()(q * 7 + 1, -k, v, AttentionContext(layout))
    assert torch.equal(out, again)


def test_g2m_route_fast_path_equals_the_mixer_path(vggt_small):
    block = vggt_small.aggregator.global_blocks[2]
    layout = TokenLayout(2, (2, 3), 5, reference_frame=True)
    from avggt_bench.models.rope import patch_positions

    pos = patch_positions(2, 2, 3, 5, torch.device("cpu")).reshape(1, -1, 2)
    x = torch.randn(1, layout.num_tokens, 384, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        fast = MeanRoute(parse_route("mean")).run(block, x, pos, layout)
        slow = block(x, pos, layout, MeanMixer())
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


# --- append path, log-count bias, stability, exclude-self mean -----------------------------


@pytest.mark.parametrize("scope", ["global", "per_frame"])
def test_append_path_equals_merge_path(scope):
    layout = TokenLayout(3, (5, 7), 5, reference_frame=True)
    q, k, v, _ = qkv(layout)
    a, _ = run_mixer(
        SGAOptions(sigma=4, diag=False, mean_scope=scope, mean_path="append"), layout, q, k, v
    )
    b, _ = run_mixer(SGAOptions(sigma=4, diag=False, mean_scope=scope), layout, q, k, v)
    assert (a - b).abs().max().item() <= 1e-12


def test_log_count_bias_equals_repeating_the_mean_column():
    layout = TokenLayout(2, (5, 7), 5, reference_frame=True)
    q, k, v, _ = qkv(layout)
    opts = SGAOptions(sigma=9, mean_log_count_bias=True)
    fast, _ = run_mixer(opts, layout, q, k, v)
    assert (fast - sga_reference(q, k, v, layout, opts)).abs().max().item() <= 1e-12


@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_merge_is_stable_for_huge_logits(scale):
    layout = TokenLayout(3, (4, 5), 5, reference_frame=True)
    q, k, v, _ = qkv(layout, scale=scale)
    opts = SGAOptions(sigma=4)
    fast, _ = run_mixer(opts, layout, q, k, v)
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, sga_reference(q, k, v, layout, opts), rtol=0, atol=1e-9)
    f32, _ = run_mixer(opts, layout, q.float(), k.float(), v.float())
    assert torch.isfinite(f32).all()


def test_exclude_self_mean_equals_removing_the_query_from_the_dropped_set():
    layout = TokenLayout(2, (4, 5), 5, reference_frame=False)
    q, k, v, _ = qkv(layout)
    for scope in ("global", "per_frame"):
        opts = SGAOptions(sigma=4, keep_first_frame=False, mean_exclude_self=True, mean_scope=scope)
        fast, _ = run_mixer(opts, layout, q, k, v)
        assert (fast - sga_reference(q, k, v, layout, opts)).abs().max().item() <= 1e-12
        plain, _ = run_mixer(
            SGAOptions(sigma=4, keep_first_frame=False, mean_scope=scope), layout, q, k, v
        )
        assert (fast - plain).abs().max().item() > 1e-6  # the switch changes something


# --- log-sum-exp backends ------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["cpu_flash", "math"])
def test_lse_backends_return_natural_log_sum_exp(backend):
    q = torch.randn(2, 3, 37, 64)
    k, v = torch.randn(2, 3, 29, 64), torch.randn(2, 3, 29, 64)
    out, lse, used = attn_lse(q, k, v, backend)
    ref = torch.logsumexp(q @ k.transpose(-1, -2) / 8.0, dim=-1)
    assert used == backend and lse.shape == (2, 3, 37)
    torch.testing.assert_close(lse, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, softmax_attention(q, k, v), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize(
    "backend, dtype", [("sdpa_flash", torch.bfloat16), ("sdpa_efficient", torch.float32)]
)
def test_cuda_lse_backends(backend, dtype):
    q = torch.randn(1, 4, 300, 64, device="cuda", dtype=dtype)
    k, v = (
        torch.randn(1, 4, 200, 64, device="cuda", dtype=dtype),
        torch.randn(1, 4, 200, 64, device="cuda", dtype=dtype),
    )
    _, lse, _ = attn_lse(q, k, v, backend)
    ref = torch.logsumexp((q.float() @ k.float().transpose(-1, -2)) / 8.0, dim=-1)
    torch.testing.assert_close(
        lse,
        ref,
        rtol=2e-2 if dtype == torch.bfloat16 else 1e-5,
        atol=5e-2 if dtype == torch.bfloat16 else 1e-5,
    )
    assert set(BACKENDS) >= {backend}


# --- route resolution; skip; cost model ----------------------------------------------------


def test_named_variants_resolve_to_the_papers_routes():
    sga9 = "sga(sigma=9,diag=1,mean=1,keep_first_frame=1)"
    assert resolve_routes("avggt_9", "vggt", 24) == ["frame"] * 9 + [sga9] * 15
    assert (
        resolve_routes("avggt_9", "pi3", 18)
        == ["frame"] * 10 + [sga9.replace("frame=1", "frame=0")] * 8
    )
    minus = resolve_routes("avggt_2_minus", "vggt", 24)
    assert minus[20:] == ["frame"] * 4 and minus[9].startswith("sga(sigma=2")
    assert resolve_routes("g2f", "vggt", 24) == ["frame"] * 9 + ["global"] * 15
    assert resolve_routes("g2m", "vggt", 24) == ["mean"] * 9 + ["global"] * 15
    assert resolve_routes({"name": "avggt", "t_early_unit": "decoder_block"}, "pi3", 18)[:6] == [
        "frame"
    ] * 5 + [sga9.replace("frame=1", "frame=0")]
    _, resolved = resolve_attention("avggt_4", "vggt", 24)
    assert (
        resolved["t_early"] == 9 and resolved["keep_first_frame"] is True and resolved["sigma"] == 4
    )


@pytest.mark.parametrize(("name", "first"), [("vggt_small", True), ("pi3_small", False)])
def test_keep_first_frame_auto_follows_the_family_for_bare_and_partial_sga_routes(name, first):
    """A bare `sga` override on the dense preset (no method to resolve `auto`) and an `sga(...)`
    string that leaves keep_first_frame out both keep the first frame for VGGT (its reference
    frame) and not for π³ (none); an explicit value is kept as written."""
    overrides = [
        {"layers": "2", "route": "sga"},
        {"layers": "3", "route": "sga(sigma=4)"},
        {"layers": "4", "route": f"sga(sigma=4,keep_first_frame={int(not first)})"},
    ]
    model = build_model(name, attention={"method": "dense", "overrides": overrides})
    got = [model.routes[g].options.keep_first_frame for g in (2, 3, 4)]
    assert got == [first, first, not first]
    assert f"keep_first_frame={int(first)}" in model.route_strings[2]


def test_build_model_from_python_equals_the_hydra_job_routes():
    model = build_model("vggt_small", attention="avggt_9")
    assert model.route_strings == resolve_routes("avggt_9", "vggt", 24)
    assert model.attention_config["t_early"] == 9
    custom = build_model(
        "vggt_small",
        attention={"name": "avggt_4", "overrides": [{"layers": "23", "route": "skip"}]},
    )
    assert custom.route_strings[23] == "skip" and custom.route_strings[22].startswith("sga(sigma=4")


def test_skip_route(vggt_small):
    block = vggt_small.aggregator.global_blocks[0]
    layout = TokenLayout(2, (2, 2), 5, reference_frame=True)
    x = torch.randn(1, layout.num_tokens, 384)
    pos = torch.zeros(1, layout.num_tokens, 2, dtype=torch.long)
    with torch.no_grad():
        assert torch.equal(build_route("skip").run(block, x, pos, layout), x)
        half = build_route("skip(part=attention)").run(block, x, pos, layout)
        assert torch.equal(half, x + block.mlp_branch(x))


def test_cost_model_reproduces_the_papers_tables():
    dense = vggt_cost(VGGT_1B, 800, 28, 37, ["global"] * 24)
    fast = vggt_cost(VGGT_1B, 800, 28, 37, resolve_routes("avggt_9", "vggt", 24))
    assert fast.global_layers[9].info == {"kept": 108_906, "dropped": 723_894, "mean_columns": 1}
    assert fast.global_layers[9].attention / 1e14 == pytest.approx(1.857, abs=5e-4)
    assert fast.global_layers[0].attention / 1e12 == pytest.approx(1.776, abs=5e-4)
    assert fast.total / 1e15 == pytest.approx(3.82, abs=5e-3)
    assert dense.total / fast.total == pytest.approx(9.2, abs=0.05)
    assert 2.5e9 < fast.global_layers[9].extra < 3.5e9  # diag + mean extras ≈ 3e9
    for sigma, kept, core in [(2, 430_104, 7.336), (4, 217_570, 3.711), (6, 150_454, 2.566)]:
        c = vggt_cost(
            VGGT_1B, 800, 28, 37, resolve_routes({"name": "avggt", "sigma": sigma}, "vggt", 24)
        )
        assert c.global_layers[10].info["kept"] == kept
        assert c.global_layers[10].attention / 1e14 == pytest.approx(core, abs=5e-4)


# --- bad input ----------------------------------------------------------------------------


def test_bad_avggt_configs_name_the_valid_values():
    with pytest.raises(
        ConfigError, match=r"sigma=5 is not in the AVGGT table; valid: 1, 2, 4, 6, 9"
    ):
        resolve_routes({"name": "avggt", "sigma": 5}, "vggt", 24)
    with pytest.raises(ConfigError, match=r"t_early=30 is beyond this vggt model: valid 0..24"):
        resolve_routes({"name": "avggt", "t_early": 30}, "vggt", 24)
    with pytest.raises(ConfigError, match="unknown sga option"):
        build_route("sga(sigmaa=2)")
    with pytest.raises(ConfigError, match="mean_path=append cannot express the diagonal"):
        SGAOptions(mean_path="append")
    with pytest.raises(ConfigError, match="decoder_block applies to π³ only"):
        resolve_routes({"name": "avggt", "t_early_unit": "decoder_block"}, "vggt", 24)


def test_sga_with_one_vggt_frame_degrades_to_dense_and_says_so():
    layout = TokenLayout(1, (4, 5), 5, reference_frame=True)
    route = build_route("sga(sigma=9,diag=1,mean=1,keep_first_frame=1)")
    q, k, v, _ = qkv(layout, dtype=torch.float32)
    out = route.mixer(q, k, v, AttentionContext(layout))
    assert torch.equal(out, torch.nn.functional.scaled_dot_product_attention(q, k, v))
    assert route.describe(layout)["path"] == "dense (nothing dropped)"
    # two frames of 4x5 patches, sigma 9 (3x3 windows): frame 1 keeps 2*2 patches, frame 0 all
    two = route.describe(TokenLayout(2, (4, 5), 5, True))
    assert (two["tokens"], two["kept"], two["dropped"], two["path"]) == (50, 25 + 5 + 4, 16, "sga")
