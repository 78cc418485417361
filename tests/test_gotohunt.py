"""GoToHunt's schedule: resolved per layer for VGGT and π³, its strided layer against explicit key
lists, and its cost-model row against a hand count."""

import math

import pytest
import torch

from avggt_bench.attention.base import AttentionContext
from avggt_bench.attention.config import resolve_routes
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import build_route
from avggt_bench.errors import ConfigError
from avggt_bench.flops import global_layer_cost, pi3_cost, vggt_cost
from avggt_bench.models import build_model
from avggt_bench.models.pi3.model import PI3
from avggt_bench.models.vggt.model import VGGT_1B

FAMILIES = {"vggt": (24, True), "pi3": (18, False)}  # global layers, reference frame


@pytest.mark.parametrize("family", FAMILIES)
def test_schedule_is_frame_then_strided_then_dense(family):
    layers, _ = FAMILIES[family]
    routes = resolve_routes("gotohunt", family, layers)
    strided = "sga(sigma=9,diag=0,mean=0,keep_first_frame=0,stride=3x3)"
    assert routes == ["frame"] * 2 + [strided] * 7 + ["global"] * (layers - 9)
    opts = build_route(strided).options
    assert opts.strides == (3, 3) and opts.grid_anchor == (0, 0) and opts.keep_special
    assert not (opts.diag or opts.mean or opts.keep_first_frame)


@pytest.mark.parametrize("model", ["vggt_small", "pi3_small"])
def test_build_model_takes_the_preset(model):
    built = build_model(model, attention="gotohunt")
    assert built.route_strings == resolve_routes("gotohunt", built.preset.family, len(built.routes))


def test_bad_schedules_are_refused():
    with pytest.raises(ConfigError, match="local_layers"):
        resolve_routes({"name": "gotohunt", "local_layers": 5, "sample_layers": 3}, "vggt", 24)
    with pytest.raises(ConfigError, match="local_layers"):
        resolve_routes({"name": "gotohunt", "sample_layers": 19}, "pi3", 18)
    with pytest.raises(ConfigError, match="stride"):
        resolve_routes({"name": "gotohunt", "stride": 0}, "vggt", 24)


def kept_keys(layout: TokenLayout, stride: int = 3) -> list[int]:
    """Every frame's special tokens and its patches on rows and columns 0, s, 2s, ... (frame 0
    included), written out from the release's reading, not from the SGA code."""
    h, w = layout.grid
    keys = []
    for f in range(layout.frames):
        base = f * layout.tokens_per_frame
        keys += [base + i for i in range(layout.num_special)]
        for r in range(0, h, stride):
            for c in range(0, w, stride):
                keys.append(base + layout.num_special + r * w + c)
    return keys


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("grid", [(4, 5), (6, 7)])
def test_strided_layer_equals_explicit_key_lists(family, grid):
    layers, reference_frame = FAMILIES[family]
    layout = TokenLayout(3, grid, 5, reference_frame)
    route = build_route(resolve_routes("gotohunt", family, layers)[2])
    gen = torch.Generator().manual_seed(7)
    shape = (1, 2, layout.num_tokens, 8)
    q, k, v = (torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(3))
    keys = kept_keys(layout)
    slow = torch.empty_like(q)
    for i in range(layout.num_tokens):  # one softmax per query over its explicit key list
        scores = q[:, :, i : i + 1] @ k[:, :, keys].transpose(-1, -2) / math.sqrt(8)
        slow[:, :, i : i + 1] = torch.softmax(scores, dim=-1) @ v[:, :, keys]
    ctx = AttentionContext(layout, k_unrotated=k)
    fast = route.mixer(q, k, v, ctx)
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(route.reference(q, k, v, ctx), slow, rtol=1e-10, atol=1e-12)
    assert route.describe(layout)["kept"] == len(keys)


def test_cost_row_against_a_hand_count_and_beside_dense_and_avggt():
    frames, (h, w), dim = 100, (28, 37), VGGT_1B.embed_dim
    layout = TokenLayout(frames, (h, w), 5, True)
    strided = resolve_routes("gotohunt", "vggt", 24)[2]
    row = global_layer_cost(strided, layout, dim)
    tokens = frames * (5 + h * w)
    kept = frames * (5 + math.ceil(h / 3) * math.ceil(w / 3))  # 10 x 13 grid patches per frame
    assert row.info["kept"] == kept == 100 * 135
    assert row.attention == 2 * tokens * kept * dim  # Q·Kᵀ and P·V over the kept keys
    assert row.linear == 12 * tokens * dim * dim and row.extra == 0  # no diagonal, no mean
    total = {
        name: vggt_cost(VGGT_1B, frames, h, w, routes).total
        for name, routes in {
            "dense": ["global"] * 24,
            "gotohunt": resolve_routes("gotohunt", "vggt", 24),
            "avggt_9": resolve_routes("avggt_9", "vggt", 24),
        }.items()
    }
    # 15 dense late layers: cheaper than dense, dearer than AVGGT(9)'s 15 subsampled ones
    assert total["dense"] > total["gotohunt"] > total["avggt_9"]
    pi3 = {
        name: pi3_cost(PI3, frames, h, w, resolve_routes(name, "pi3", 18)).total
        for name in ("dense", "gotohunt", "api3_9")
    }
    assert pi3["dense"] > pi3["gotohunt"] > pi3["api3_9"]
