"""Fidelity to the dense parent, its cache, and the report's speedup pairing."""

import pandas as pd
import pytest
import torch

from avggt_bench.job.parent import load_reference, reference_key, save_reference
from avggt_bench.metrics.fidelity import Reference, fidelity
from avggt_bench.models.vggt.pose_encoding import quat_to_mat
from avggt_bench.report import add_speedups, speedup_table


def reference(seed=0, frames=5):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(frames, 4, generator=g, dtype=torch.float64)
    ext = torch.cat(
        (
            quat_to_mat(q / q.norm(dim=-1, keepdim=True)),
            torch.randn(frames, 3, 1, generator=g, dtype=torch.float64),
        ),
        -1,
    )
    depth = torch.rand(frames, 6, 7, generator=g) + 1
    points = torch.randn(frames, 6, 7, 3, generator=g)
    return Reference(ext, depth, points, stride=4)


def test_identical_predictions_are_perfectly_faithful():
    ref = reference()
    out = fidelity(ref, ref)
    assert out["pose_auc@30"] == 100.0 and out["pose_auc@5"] == 100.0
    assert out["depth_rel_diff_median"] == 0.0 and out["points_diff_median_rel"] == 0.0


def test_known_depth_and_point_differences():
    ref = reference()
    pred = Reference(ref.extrinsics, ref.depth * 1.02, ref.points + torch.tensor([0.5, 0, 0]), 4)
    out = fidelity(pred, ref)
    assert out["depth_rel_diff_median"] == pytest.approx(0.02, rel=1e-4)
    flat = ref.points.reshape(-1, 3).double()
    extent = (flat - flat.mean(0)).norm(dim=-1).median()
    assert out["points_diff_median_rel"] == pytest.approx(0.5 / extent.item(), rel=1e-6)
    assert fidelity(reference(seed=1), ref)["pose_auc@30"] < 50


def test_reference_cache_round_trip_and_key(tmp_path, vggt_small):
    ref = reference()
    save_reference(tmp_path, "k", ref)
    back = load_reference(tmp_path, "k")
    assert torch.equal(back.extrinsics, ref.extrinsics) and torch.equal(back.points, ref.points)
    assert load_reference(tmp_path, "missing") is None
    (tmp_path / "bad.pt").write_bytes(b"junk")
    assert load_reference(tmp_path, "bad") is None
    images = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    key = reference_key(vggt_small, images, {"precision": "fp32"})
    assert key == reference_key(vggt_small, images.clone(), {"precision": "fp32"})
    images[0, 0, 0, 0] = 1
    assert key != reference_key(vggt_small, images, {"precision": "fp32"})
    assert key != reference_key(vggt_small, images * 0, {"precision": "bf16"})


def row(attention, views, median, macs, dense, device="cpu", status="ok"):
    return {
        "device": device,
        "model": "m",
        "dataset": "synthetic",
        "image": "154x112",
        "num_views": views,
        "precision": "fp32",
        "weights": "random",
        "memory_lean": True,
        "attention": attention,
        "forward_median_s": median,
        "macs": macs,
        "is_dense": dense,
        "status": status,
    }


def test_speedups_pair_each_variant_with_its_own_dense_parent():
    df = pd.DataFrame(
        [
            row("dense", 8, 4.0, 100, True),
            row("avggt_9", 8, 2.0, 40, False),
            row("dense", 8, 8.0, 100, True, device="gpu"),  # another device: never mixed
            row("avggt_9", 16, 1.0, 10, False),  # no parent at 16 views: no speedup
            row("avggt_4", 8, 3.0, 50, False, status="error"),
        ]
    )
    out = add_speedups(df)
    fast = out.iloc[1]
    assert fast["speedup"] == 2.0 and fast["predicted_speedup"] == 2.5
    assert fast["speedup_efficiency"] == pytest.approx(0.8)
    assert pd.isna(out.iloc[3]["speedup"]) and pd.isna(out.iloc[4]["speedup"])
    table = speedup_table(out)
    assert table.loc[0, "avggt_9"] == "2.00x (2.50x, 80%)"


def test_dense_vggt_is_named_vggt_star_when_lean():
    from avggt_bench.report.tables import _variant

    assert _variant("dense", {"family": "vggt", "memory_lean": True}) == "dense (VGGT*)"
    assert _variant("dense", {"family": "vggt", "memory_lean": False}) == "dense (all layers)"
    assert _variant("dense", {"family": "pi3", "memory_lean": None}) == "dense"
    assert _variant("avggt_9", {"family": "vggt", "memory_lean": True}) == "avggt_9"
