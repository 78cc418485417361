"""Layer-role analysis: capture equals the explicit softmax, bounded memory, pair classes on
constructed attention patterns, GT correspondences, the rotation probe, the profiler, the CLI and
the routing-ablation presets."""

import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.utils._python_dispatch import TorchDispatchMode

from avggt_bench.analysis.attention_stats import stream_layer
from avggt_bench.analysis.capture import capture, select_queries
from avggt_bench.analysis.pairs import SceneGeometry, layer_summary, pair_flags, primary_class
from avggt_bench.analysis.probe import hub_agreement, rotate_images, rotate_tokens, rotation_probe
from avggt_bench.analysis.profiler import category_table, profile_forward
from avggt_bench.attention.config import resolve_attention
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.data.cameras import project
from avggt_bench.data.synthetic import SyntheticConfig, render_scene
from avggt_bench.paths import config_dir

LAYOUT = TokenLayout(frames=3, grid=(3, 4), num_special=2)


def explicit(q, k):
    """Head-averaged softmax(q kᵀ / sqrt(d)) in float64, and per-head probabilities."""
    s = q.double() @ k.double().transpose(-1, -2) / math.sqrt(q.shape[-1])
    p = torch.softmax(s, dim=-1)
    return p.mean(0), p, s


def test_streamed_statistics_equal_the_explicit_softmax():
    gen = torch.Generator().manual_seed(0)
    heads, tokens, d = 3, LAYOUT.num_tokens, 8
    q = torch.randn(1, heads, tokens, d, generator=gen) * 2
    k = torch.randn(1, heads, tokens, d, generator=gen) * 2
    queries = torch.tensor([0, 3, 7, 15, 20, 41])
    cap = stream_layer(
        q,
        k,
        LAYOUT,
        queries,
        top_k=10,
        heads="all",
        query_chunk=4,
        key_chunk=7,
        dtype=torch.float64,
        dense=True,
    )
    pm, p, _ = explicit(q[0][:, queries], k[0])
    torch.testing.assert_close(cap.dense, pm, rtol=0, atol=1e-12)
    flat = pm.reshape(-1).topk(10)
    torch.testing.assert_close(cap.top_values, flat.values, rtol=0, atol=1e-12)
    assert cap.top_queries.tolist() == queries[flat.indices // tokens].tolist()
    assert cap.top_keys.tolist() == (flat.indices % tokens).tolist()
    assert cap.top1_key.tolist() == pm.argmax(-1).tolist()
    head_entropy = -(p * p.log()).sum(-1)
    torch.testing.assert_close(cap.head_entropy, head_entropy, rtol=0, atol=1e-10)
    torch.testing.assert_close(cap.entropy, head_entropy.mean(0), rtol=0, atol=1e-10)
    torch.testing.assert_close(cap.entropy_of_mean, -(pm * pm.log()).sum(-1), rtol=0, atol=1e-10)
    torch.testing.assert_close(cap.peak, pm.amax(-1), rtol=0, atol=1e-12)
    torch.testing.assert_close(cap.head_peak, p.amax(-1), rtol=0, atol=1e-12)
    assert (cap.num_keys == tokens).all()


def test_frame_call_sees_only_its_frame():
    gen = torch.Generator().manual_seed(1)
    per = LAYOUT.tokens_per_frame
    q = torch.randn(LAYOUT.frames, 2, per, 4, generator=gen)
    k = torch.randn(LAYOUT.frames, 2, per, 4, generator=gen)
    queries = torch.tensor([1, per + 3, 2 * per + 5])
    cap = stream_layer(q, k, LAYOUT, queries, top_k=5, dtype=torch.float64, dense=True)
    for i, t in enumerate(queries.tolist()):
        f, j = divmod(t, per)
        row = torch.zeros(LAYOUT.num_tokens, dtype=torch.float64)
        row[f * per : (f + 1) * per] = explicit(q[f][:, j : j + 1], k[f])[0][0]
        torch.testing.assert_close(cap.dense[i], row, rtol=0, atol=1e-12)
    assert (cap.num_keys == per).all()
    assert (cap.top_queries // per == cap.top_keys // per).all()


class Recorder:
    """Wraps a route's mixer and keeps the q and k it receives."""

    def __init__(self, inner):
        self.inner, self.seen = inner, []

    def __call__(self, q, k, v, ctx):
        self.seen.append((q.clone(), k.clone()))
        return self.inner(q, k, v, ctx)


def test_model_capture_uses_the_layers_own_q_and_k(vggt_small):
    images = torch.rand(2, 3, 28, 42, generator=torch.Generator().manual_seed(2))
    g = 3
    route = vggt_small.routes[g]
    original = route.mixer
    route.mixer = Recorder(original)
    try:
        caps = capture(vggt_small, images, [g], "all", dtype="float64", dense=True, top_k=7)
        ((q, k),) = route.mixer.seen
    finally:
        route.mixer = original
    pm = explicit(q[0], k[0])[0]
    torch.testing.assert_close(caps[g].dense, pm, rtol=0, atol=1e-9)
    assert caps[g].route == "global"


class LargestTensor(TorchDispatchMode):
    """Records the element count of the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat = [*args, *(kwargs or {}).values()]
        inputs = {a.untyped_storage().data_ptr() for a in flat if isinstance(a, torch.Tensor)}
        for t in out if isinstance(out, tuple | list) else (out,):
            # views share their input's storage: only new allocations count
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.largest = max(self.largest, t.numel())
        return out


def test_capture_memory_is_bounded_by_the_chunks_not_the_views():
    heads, d, qc, kc = 2, 8, 8, 32
    largest = {}
    for frames in (2, 8):
        layout = TokenLayout(frames=frames, grid=(3, 4), num_special=5)
        q = torch.randn(1, heads, layout.num_tokens, d)
        k = torch.randn(1, heads, layout.num_tokens, d)
        queries = select_queries(layout, 20, seed=0)
        with LargestTensor() as probe:
            cap = stream_layer(q, k, layout, queries, top_k=10, query_chunk=qc, key_chunk=kc)
        largest[frames] = probe.largest
        assert cap.largest_block <= heads * qc * kc
        with LargestTensor() as full:
            explicit(q[0][:, queries], k[0])
        assert full.largest > heads * qc * kc  # the tracker sees a full-row softmax
    assert largest[2] <= heads * qc * kc and largest[8] <= heads * qc * kc
    assert largest[8] == largest[2]


def forced(pattern: str, layout: TokenLayout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k (one head) whose attention peaks on self, the same position or the same row, and
    the patch-token queries."""
    per, ns = layout.tokens_per_frame, layout.num_special
    h, w = layout.grid
    t = torch.arange(layout.num_tokens)
    frame, slot = t // per, t % per
    patch = (slot - ns).clamp(min=0)
    special = slot < ns
    row, col = patch // w, patch % w

    def onehot(idx, n):
        return torch.nn.functional.one_hot(idx, n).double() * (~special)[:, None]

    big, pen = 40.0, 20.0
    if pattern == "self":
        code = torch.nn.functional.one_hot(t, layout.num_tokens).double()
        q, k = big * code, code
    elif pattern == "same_position":
        pos, fr = onehot(patch, h * w), onehot(frame, layout.frames)
        q, k = torch.cat((big * pos, -pen * fr), 1), torch.cat((pos, fr), 1)
    else:  # same_row
        r, c, fr = onehot(row, h), onehot(col, w), onehot(frame, layout.frames)
        q = torch.cat((big * r, -pen * c, -pen * fr), 1)
        k = torch.cat((r, c, fr), 1)
    scale = math.sqrt(q.shape[1])  # undo the 1/sqrt(d) of the softmax
    return (q * scale)[None, None].float(), k[None, None].float(), t[~special]


@pytest.mark.parametrize("pattern", ["self", "same_position", "same_row"])
def test_forced_attention_patterns_give_the_expected_class(pattern):
    q, k, queries = forced(pattern, LAYOUT)
    cap = stream_layer(q, k, LAYOUT, queries, top_k=20, dtype=torch.float64)
    row = layer_summary(cap)
    assert row[f"frac_{pattern}"] == 1.0
    assert row[f"top1_{pattern}"] == 1.0
    others = [c for c in ("self", "same_position", "same_row", "special") if c != pattern]
    assert all(row[f"frac_{c}"] == 0.0 for c in others)
    assert row["frac_gt_corr"] is None  # no geometry given
    if pattern == "self":
        assert row["peak_mean"] > 0.99 and row["entropy_norm"] < 0.05


def test_pair_flags_and_primary_class_precedence():
    per = LAYOUT.tokens_per_frame
    q = torch.tensor([2, 0, 2, 2, 2, 2])
    k = torch.tensor([2, per + 3, per + 2, per + 4, 3, 2 * per + 13])
    flags = pair_flags(q, k, LAYOUT)
    assert primary_class(flags) == [
        "self",
        "special",
        "same_position",
        "same_row",
        "same_frame",
        "other",
    ]
    assert flags["special_query"].tolist() == [False, True, False, False, False, False]


def test_gt_correspondence_agrees_with_an_independent_projection():
    scene = render_scene(SyntheticConfig(num_views=2, width=70, height=56, seed=3))
    layout = TokenLayout(frames=2, grid=(4, 5), num_special=5)
    depth = torch.where(scene.valid, scene.depth, torch.zeros_like(scene.depth))
    geo = SceneGeometry(depth, scene.intrinsics, scene.extrinsics)
    hits, misses = 0, 0
    for r in range(4):
        for c in range(5):
            u, v = 14 * c + 6.5, 14 * r + 6.5
            d = float(depth[0, int(v + 0.5), int(u + 0.5)])
            kmat, e = scene.intrinsics[0], scene.extrinsics[0]
            cam = torch.tensor(
                [(u - kmat[0, 2]) * d / kmat[0, 0], (v - kmat[1, 2]) * d / kmat[1, 1], d],
                dtype=torch.float64,
            )
            world = e[:, :3].T @ (cam - e[:, 3])
            uv, z = project(scene.intrinsics[1].numpy(), scene.extrinsics[1].numpy(), world.numpy())
            uv, z = uv[0], z[0]
            pc, pr = int((uv[0] + 0.5) // 14), int((uv[1] + 0.5) // 14)
            q = torch.tensor([5 + r * 5 + c])
            if not (z > 0 and 0 <= pc < 5 and 0 <= pr < 4):
                continue
            good = torch.tensor([layout.tokens_per_frame + 5 + pr * 5 + pc])
            far_r, far_c = (pr + 3) % 4 if pr < 2 else 0, 4 if pc < 2 else 0
            far = torch.tensor([layout.tokens_per_frame + 5 + far_r * 5 + far_c])
            hits += int(pair_flags(q, good, layout, geo)["gt_corr"].item())
            misses += int(pair_flags(q, far, layout, geo, radius=1)["gt_corr"].item())
    assert hits >= 5 and misses == 0


def test_rotation_maps_patches_to_their_content():
    layout = TokenLayout(frames=2, grid=(2, 3), num_special=1)
    images = (
        torch.arange(2 * 28 * 42, dtype=torch.float32).reshape(2, 1, 28, 42).expand(2, 3, 28, 42)
    )
    rot = rotate_images(images, [1])
    tokens = torch.arange(layout.num_tokens)
    mapped = rotate_tokens(tokens, layout, [1])
    assert rotate_tokens(mapped, layout, [1]).tolist() == tokens.tolist()
    for t, m in zip(tokens.tolist(), mapped.tolist(), strict=True):
        f, slot = divmod(t, layout.tokens_per_frame)
        if slot == 0:
            assert m == t
            continue
        r, c = divmod(slot - 1, 3)
        rm, cm = divmod(m % layout.tokens_per_frame - 1, 3)
        patch = images[f, 0, 14 * r : 14 * r + 14, 14 * c : 14 * c + 14]
        moved = rot[f, 0, 14 * rm : 14 * rm + 14, 14 * cm : 14 * cm + 14]
        assert sorted(patch.reshape(-1).tolist()) == sorted(moved.reshape(-1).tolist())
    hubs = torch.tensor([1, 3, layout.tokens_per_frame + 1])
    follow = hub_agreement(hubs, rotate_tokens(hubs, layout, [0, 1]), layout, [0, 1], radius=0)
    assert follow == {"grid_agreement": 0.0, "content_agreement": 1.0}
    fixed = hub_agreement(hubs, hubs, layout, [0, 1], radius=0)
    assert fixed == {"grid_agreement": 1.0, "content_agreement": 0.0}


def test_rotation_probe_runs_on_the_model(vggt_small):
    images = torch.rand(2, 3, 28, 42, generator=torch.Generator().manual_seed(4))
    table = rotation_probe(vggt_small, images, [0, 12], "all", n_hubs=5, top_k=5)
    assert table["layer"].tolist() == [0, 12]
    for col in ("grid_agreement", "content_agreement", "top1_same_content"):
        assert table[col].between(0, 1).all()


def test_profiler_attributes_time_to_the_blocks_that_ran(vggt_small):
    from avggt_bench.attention.routes import build_route

    dense = vggt_small.routes
    vggt_small.set_routes(dense[:10] + [build_route("skip") for _ in range(14)])
    try:
        prof = profile_forward(vggt_small, torch.rand(2, 3, 28, 28), warmup=0, repeats=1)
    finally:
        vggt_small.set_routes(dense)
    global_layers = sorted(prof[prof["category"] == "global_attn"]["layer"].tolist())
    assert global_layers == list(range(10))  # skipped layers never ran their attention
    assert sorted(prof[prof["category"] == "frame_attn"]["layer"]) == list(range(24))
    assert set(prof["category"]) >= {"patch_embed", "mlp", "heads", "unattributed"}
    prof.insert(0, "views", 2)
    table = category_table(prof)
    parts = table[["patch_embed", "frame_attn", "global_attn", "mlp", "heads", "unattributed"]]
    assert float(parts.sum(axis=1).iloc[0]) == pytest.approx(float(table["forward_s"].iloc[0]))
    assert 0 < float(table["global_attn_share"].iloc[0]) < 1


def test_analyze_cli_writes_labelled_tables_and_figures(tmp_path):
    from avggt_bench.analyze import run_analysis

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "analyze",
            overrides=[
                "task=[pairs,profile]",
                "num_views=2",
                "scene.width=42",
                "scene.height=28",
                "analysis.layers=0-1",
                "analysis.k=5",
                "profile.views=[1,2]",
                "profile.warmup=0",
                "profile.repeats=1",
                f"out_dir={tmp_path}",
            ],
        )
        summary = run_analysis(cfg)
    assert summary["weights"] == "random"
    for name in (
        "pair_profile.csv",
        "pair_profile.md",
        "pair_profile.png",
        "profile_bars.png",
        "profile_categories.csv",
        "summary.json",
        "pairs_topk.csv",
    ):
        assert (tmp_path / name).exists(), name
    assert "weights: random" in (tmp_path / "pair_profile.md").read_text()
    assert "random weights" in (tmp_path / "pair_profile.md").read_text()


@pytest.mark.parametrize(
    ("experiment", "overrides", "expect"),
    [
        (
            "ablation_swap",
            ["attention.swap_route=mean", "attention.swap_layers=3-5"],
            {3: "mean", 5: "mean", 6: "global", 2: "global"},
        ),
        ("ablation_t_early", ["attention.t_early=6"], {5: "frame", 6: "sga"}),
        ("ablation_sigma", ["attention.sigma=4"], {12: "sga(sigma=4"}),
    ],
)
def test_ablation_presets_compose_to_the_intended_routes(experiment, overrides, expect):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "config", overrides=[f"experiment={experiment}", *overrides], return_hydra_config=True
        )
    assert cfg.hydra.sweeper.params
    routes, _ = resolve_attention(cfg.attention, "vggt", 24)
    for layer, prefix in expect.items():
        assert routes[layer].startswith(prefix), (layer, routes[layer])
