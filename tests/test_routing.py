"""Attention config -> per-layer routes; the seam carries the token layout."""

import pytest
import torch

from avggt_bench.attention.config import parse_layers, resolve_routes
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import Route, build_route, parse_route
from avggt_bench.errors import ConfigError


def test_dense_preset_resolves_to_global_everywhere():
    assert resolve_routes("dense", "vggt", 24) == ["global"] * 24


def test_overrides_apply_in_order_and_are_validated():
    overrides = [
        {"layers": "1-4", "route": "frame"},
        {"layers": "3-5", "route": "mean"},  # overlaps the first: the later entry wins on 3-4
    ]
    cfg = {"method": "dense", "routes": None, "overrides": overrides}
    assert resolve_routes(cfg, "vggt", 6) == ["global", "frame", "frame", "mean", "mean", "mean"]
    reversed_order = {**cfg, "overrides": overrides[::-1]}
    assert resolve_routes(reversed_order, "vggt", 6) == ["global", *["frame"] * 4, "mean"]
    # overrides also apply on top of a preset's own routes (AVGGT: layers < t_early are `frame`)
    avggt = resolve_routes(
        {"name": "avggt_9", "overrides": [{"layers": [0], "route": "global"}]}, "vggt", 24
    )
    assert avggt[0] == "global" and avggt[1] == "frame" and avggt[-1].startswith("sga(")
    with pytest.raises(ConfigError, match=r"out of range.*6 global layers"):
        resolve_routes(
            {"method": "dense", "overrides": [{"layers": "5-6", "route": "global"}]}, "vggt", 6
        )
    with pytest.raises(ConfigError, match="must be a mapping with 'layers' and 'route'"):
        resolve_routes({"method": "dense", "overrides": [{"layer": 1}]}, "vggt", 6)


def test_routing_list_of_wrong_length_names_the_layer_count():
    with pytest.raises(ConfigError, match=r"has 3 entries.*24 global layers"):
        resolve_routes({"routes": ["global"] * 3}, "vggt", 24)


def test_unknown_route_and_preset_suggest_valid_names():
    with pytest.raises(
        ConfigError, match=r"unknown attention route 'globl'.*Did you mean 'global'"
    ):
        resolve_routes({"routes": ["globl"] * 2}, "vggt", 2)
    with pytest.raises(ConfigError, match=r"unknown attention preset 'dens'.*'dense'"):
        resolve_routes("dens", "vggt", 24)


def test_route_strings_round_trip():
    spec = parse_route("sga(sigma=9,diag=1,stride=3x2,name=x)")
    assert spec.name == "sga"
    assert spec.params == {"sigma": 9, "diag": 1, "stride": (3, 2), "name": "x"}
    assert parse_route(str(spec)) == spec
    with pytest.raises(ConfigError, match="cannot parse route"):
        parse_route("sga(")


def test_layer_specs():
    assert parse_layers("0-2,5", 8) == [0, 1, 2, 5]
    assert parse_layers([1, 3], 8) == [1, 3]
    assert parse_layers("all", 3) == [0, 1, 2]


class RecordingMixer:
    def __init__(self):
        self.layouts = []

    def __call__(self, q, k, v, ctx):
        self.layouts.append((ctx.layout, tuple(q.shape), ctx.x.shape))
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


class RecordingRoute(Route):
    def __init__(self):
        super().__init__(parse_route("global"))
        self.mixer = RecordingMixer()

    def run(self, block, x, pos, layout):
        return block(x, pos, layout, self.mixer)


def test_global_layers_receive_the_token_layout(vggt_small):
    x = torch.rand(1, 3, 3, 28, 42, generator=torch.Generator().manual_seed(0))
    routes = [RecordingRoute() for _ in range(24)]
    dense = list(vggt_small.routes)
    with torch.inference_mode():
        expected = vggt_small(x)
        vggt_small.set_routes(routes)
        try:
            recorded = vggt_small(x)
        finally:
            vggt_small.set_routes(dense)
    layout, qshape, xshape = routes[7].mixer.layouts[0]
    assert layout == TokenLayout(frames=3, grid=(2, 3), num_special=5, reference_frame=True)
    assert layout.tokens_per_frame == 11 and layout.num_tokens == 33
    assert qshape == (1, 6, 33, 64) and xshape == (1, 33, 384)
    # a route that plugs in at the seam and does plain SDPA gives the dense outputs; the dense
    # route may pick another SDPA backend (model.sdpa_policy), so equal up to float32 rounding
    torch.testing.assert_close(recorded.depth, expected.depth, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(recorded.pose_enc, expected.pose_enc, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="expected 24 routes"):
        vggt_small.set_routes(dense[:3])


def test_build_route_rejects_parameters_on_global():
    with pytest.raises(ConfigError, match="takes no parameters"):
        build_route("global(x=1)")


def test_preset_name_with_overrides_resolves_its_interpolations_after_the_merge():
    from avggt_bench.attention.config import resolve_routes

    routes = resolve_routes(
        {"name": "swap", "swap_layers": "3-5", "swap_route": "mean"}, "vggt", 24
    )
    assert routes[3:6] == ["mean"] * 3
    assert all(r == "global" for k, r in enumerate(routes) if k not in (3, 4, 5))
    default = resolve_routes({"name": "swap"}, "vggt", 24)
    assert default[:9] == ["frame"] * 9 and default[9] == "global"


@pytest.mark.parametrize(
    "route, kind",
    [("sga(sigm=9)", "sga"), ("block_sparse(rh=0.5)", "block_sparse"), ("merge(ratio=1)", "merge")],
)
def test_a_misspelled_route_option_is_an_error_naming_the_valid_ones(route, kind):
    from avggt_bench.attention.routes import build_route

    with pytest.raises(ConfigError, match=rf"unknown {kind} option\(s\) \['\w+'\]; valid: "):
        build_route(route)
