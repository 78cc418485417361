"""The analytic cost model reproduces hand-computed MAC counts and the AVGGT paper's ~35 PFLOPs."""

import pytest

from avggt_bench.attention.layout import TokenLayout
from avggt_bench.flops import dpt_head_macs, global_layer_cost, linear_macs, vggt_cost
from avggt_bench.models.vggt.model import VGGT_1B, VGGT_SMALL


def test_dense_vggt_at_800_frames_is_the_papers_35_pflop():
    cost = vggt_cost(VGGT_1B, 800, 28, 37, ["global"] * 24)
    c = cost.components
    assert cost.total / 1e15 == pytest.approx(35.11, abs=0.005)
    assert c["global_attention"] / 1e15 == pytest.approx(34.09, abs=0.005)
    assert c["patch_embed"] / 1e15 == pytest.approx(0.295, abs=0.0005)
    assert (c["frame_linear"] + c["global_linear"]) / 1e15 == pytest.approx(0.503, abs=0.0005)
    assert c["frame_attention"] / 1e15 == pytest.approx(0.043, abs=0.0005)
    assert (c["depth_head"] + c["point_head"]) / 1e15 == pytest.approx(0.181, abs=0.0005)
    assert c["camera_head"] < 1e12


def test_per_layer_numbers():
    layout = TokenLayout(frames=800, grid=(28, 37), num_special=5, reference_frame=True)
    g = global_layer_cost("global", layout, 1024)
    assert layout.num_tokens == 832_800
    assert g.attention / 1e15 == pytest.approx(1.420, abs=0.0005)
    assert linear_macs(832_800, 1024) / 1e13 == pytest.approx(1.048, abs=0.0005)
    assert dpt_head_macs(2048, 28, 37, 4) / 1e9 == pytest.approx(112.9, abs=0.05)


def test_global_attention_grows_quadratically_and_small_preset_is_cheaper():
    a = vggt_cost(VGGT_SMALL, 16, 8, 11, ["global"] * 24).components["global_attention"]
    b = vggt_cost(VGGT_SMALL, 32, 8, 11, ["global"] * 24).components["global_attention"]
    assert b == 4 * a
    small = vggt_cost(VGGT_SMALL, 16, 8, 11, ["global"] * 24).total
    big = vggt_cost(VGGT_1B, 16, 8, 11, ["global"] * 24).total
    assert small < big / 3


def test_preset_cost_table_orders_the_schedules_and_leaves_out_what_does_not_apply():
    from avggt_bench.flops import preset_cost_table, vggt_cost
    from avggt_bench.models.vggt.model import VGGT_1B

    names = ["dense", "avggt_9", "gotohunt", "fastvggt"]
    vggt = {r["preset"]: r for r in preset_cost_table("vggt", [800], names)}
    assert vggt["dense"][800] == (vggt_cost(VGGT_1B, 800, 28, 37, ["global"] * 24).total, 1.0)
    # GoToHunt keeps its late layers dense, AVGGT(9) subsamples them: between dense and AVGGT(9)
    assert 1.0 < vggt["gotohunt"][800][1] < vggt["avggt_9"][800][1]
    pi3 = {r["preset"]: r["preset"] for r in preset_cost_table("pi3", [16], names)}
    assert "gotohunt" in pi3 and "fastvggt" not in pi3  # FastVGGT is VGGT-only
