"""Frame-sharded inference (avggt_bench.parallel) on CPU with gloo: 2 and 3 spawned processes
(uneven splits) give the single-process outputs, and each global layer receives exactly the bytes
the cost model predicts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import build_route
from avggt_bench.models.dinov2 import DinoArch
from avggt_bench.models.pi3.model import Pi3, Pi3Arch
from avggt_bench.models.recipe_weights import fill_recipe_weights
from avggt_bench.models.vggt.model import VGGT, VGGTArch
from avggt_bench.parallel import FrameParallel, frame_parallel, split_frames
from avggt_bench.parallel.launch import spawn_gloo

FRAMES, HW = 5, (56, 84)  # a 4 x 6 patch grid: sigma = 9 keeps 4 patches of 24 per frame
DINO = DinoArch("dino_tiny", 32, 1, 2)
VGGT_TINY = VGGTArch(
    "vggt_tiny",
    DINO,
    32,
    2,
    2,
    depth=4,
    dpt_layers=(0, 1, 2, 3),
    dpt_features=8,
    dpt_out_channels=(8, 8, 8, 8),
)
PI3_TINY = Pi3Arch("pi3_tiny", DINO, 32, 2, depth=8, head_blocks=1, camera_dim=16)
SGA_VGGT = "sga(sigma=9,diag=1,mean=1,keep_first_frame=1)"  # AVGGT(9)'s SGA layers
SGA_PI3 = "sga(sigma=9,diag=1,mean=1,keep_first_frame=0)"
ROUTES = {
    "vggt_dense": ("vggt", ["global"] * 4),
    "pi3_dense": ("pi3", ["global"] * 4),
    "vggt_avggt9": ("vggt", ["frame", "frame", SGA_VGGT, SGA_VGGT]),
    "pi3_avggt9": ("pi3", ["frame", "frame", SGA_PI3, SGA_PI3]),
    "pi3_avggt_per_frame_mean": (
        "pi3",
        ["frame", "sga(sigma=9,keep_first_frame=0,mean_scope=per_frame)", "skip", "mean"],
    ),
    # SGA switches whose sharded form differs: own-key corrections, per-frame grids (uneven kept
    # counts per rank), appended means, everything kept (the ring path)
    "vggt_sga_switches": (
        "vggt",
        [
            "sga(sigma=4,keep_first_frame=1,mean_key_space=pre_rope,mean_exclude_self=1,"
            "grid_phase=per_frame)",
            "sga(sigma=9,keep_first_frame=0,diag=0,mean_path=append)",
            "sga(sigma=6,keep_first_frame=1,diag_for_kept_queries=1,mean_log_count_bias=1,"
            "mean_over=all_patches)",
            "sga(sigma=1,keep_first_frame=0)",
        ],
    ),
}


def tiny_model(name: str, dtype: torch.dtype) -> torch.nn.Module:
    family, routes = ROUTES[name]
    with torch.random.fork_rng():
        model = VGGT(VGGT_TINY) if family == "vggt" else Pi3(PI3_TINY)
    fill_recipe_weights(model, 0.03)
    for key, param in model.named_parameters():  # peaked attention: a wrong key set shows
        if key.endswith("attn.qkv.weight"):
            param.data.mul_(8)
        if key.endswith(".gamma"):  # LayerScale: let every attention branch count
            param.data.fill_(0.5)
    policy = "default" if family == "vggt" else "pi3"
    model.set_routes([build_route(r, policy) for r in routes])
    return model.to(dtype).eval()


def images(dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, FRAMES, 3, *HW, generator=g, dtype=torch.float64).to(dtype)


def outputs(pred) -> dict[str, torch.Tensor]:
    """The compared outputs (random weights can give VGGT a zero field of view, so an infinite
    focal length: the pose encoding stands for the intrinsics)."""
    fields = ("extrinsics", "depth", "depth_conf", "world_points", "world_points_conf")
    out = {f: getattr(pred, f) for f in fields}
    out["intrinsics" if pred.pose_enc is None else "pose_enc"] = (
        pred.intrinsics if pred.pose_enc is None else pred.pose_enc
    )
    return out


def sharded_worker(par: FrameParallel, name: str, dtype: torch.dtype, out: str) -> None:
    model = tiny_model(name, dtype)
    with torch.no_grad(), frame_parallel(par):
        pred = model(images(dtype))
    torch.save({"outputs": outputs(pred), "log": par.log.as_dict()}, Path(out) / f"{par.rank}.pt")


def expected_bytes(name: str, dtype: torch.dtype, world: int, rank: int) -> dict[str, int]:
    family, routes = ROUTES[name]
    layout = TokenLayout(FRAMES, (HW[0] // 14, HW[1] // 14), 5, family == "vggt")
    split = split_frames(FRAMES, world, rank)
    itemsize = torch.tensor([], dtype=dtype).element_size()
    return {
        f"global {i}": build_route(r).comm_bytes(layout, 32, split, itemsize)
        for i, r in enumerate(routes)
    }


TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
# the fast suite keeps one case per model, route kind and dtype (about 3-4 s each on a loaded
# 2-core machine); all 24 together took about 90 s there, so the rest are `slow`
FAST = {
    ("vggt_dense", 3, torch.float64),
    ("pi3_dense", 3, torch.float32),
    ("vggt_avggt9", 3, torch.float64),
    ("pi3_avggt_per_frame_mean", 2, torch.float64),
    ("vggt_sga_switches", 3, torch.float64),
}
CASES = [
    pytest.param(
        name,
        world,
        dtype,
        TOLERANCE[dtype],
        id=f"{name}-{world}ranks-{str(dtype)[6:]}",
        marks=() if (name, world, dtype) in FAST else pytest.mark.slow,
    )
    for name in ROUTES
    for world in (2, 3)
    for dtype in TOLERANCE
]


@pytest.mark.parametrize(("name", "world", "dtype", "tol"), CASES)
def test_sharded_outputs_equal_single_process_and_bytes_equal_the_cost_model(
    tmp_path, name, world, dtype, tol
):
    with torch.no_grad():
        want = outputs(tiny_model(name, dtype)(images(dtype)))
    spawn_gloo(sharded_worker, world, name, dtype, str(tmp_path))
    for rank in range(world):
        got = torch.load(tmp_path / f"{rank}.pt")
        for key, ref in want.items():
            err = (got["outputs"][key] - ref).abs().max() / ref.abs().max()
            assert err <= tol, f"rank {rank} {key}: relative error {err:.2e} > {tol:.0e}"
        measured = {k: v for k, v in got["log"]["bytes"].items() if k.startswith("global")}
        predicted = expected_bytes(name, dtype, world, rank)
        assert {k: measured.get(k, 0) for k in predicted} == predicted
        assert got["log"]["bytes"]["outputs"] > 0


@pytest.mark.parametrize(("frames", "world"), [(5, 2), (5, 3), (7, 3), (3, 3)])
def test_frame_split_is_contiguous_with_frame_zero_on_rank_zero(frames, world):
    splits = [split_frames(frames, world, r) for r in range(world)]
    assert splits[0].start == 0
    assert [s.count for s in splits] == sorted((s.count for s in splits), reverse=True)
    assert max(s.count for s in splits) - min(s.count for s in splits) <= 1
    assert [f for s in splits for f in range(s.start, s.stop)] == list(range(frames))


def test_more_ranks_than_frames_is_a_clear_error():
    from avggt_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot be split over 4 ranks"):
        split_frames(3, 4)


def test_parallel_setting_is_checked_and_frames_needs_torchrun(monkeypatch):
    from omegaconf import OmegaConf

    from avggt_bench.errors import ConfigError
    from avggt_bench.parallel.launch import start_parallel

    cpu = torch.device("cpu")
    assert start_parallel(OmegaConf.create({"parallel": "none"}), cpu) is None
    with pytest.raises(ConfigError, match="valid: none, frames"):
        start_parallel(OmegaConf.create({"parallel": "frame"}), cpu)
    monkeypatch.delenv("RANK", raising=False)
    with pytest.raises(ConfigError, match="torchrun --nproc-per-node"):
        start_parallel(OmegaConf.create({"parallel": "frames"}), cpu)


def test_committed_cluster_table_holds_what_the_cost_model_gives_now():
    from avggt_bench.parallel.cost import table

    committed = (Path(__file__).parents[1] / "results" / "cluster_cost.md").read_text()
    rows = [
        line
        for line in table([1000], [1, 2, 3], ["dense", "avggt_9"], 400, 450).splitlines()
        if line.startswith("| 1000 |")
    ]
    assert len(rows) == 6
    missing = [row for row in rows if row not in committed]
    assert not missing, (
        "stale: rerun python -m avggt_bench.parallel.cost --out results/cluster_cost.md"
    )


def test_dense_ring_workspace_and_sga_bytes_shrink_with_more_ranks():
    layout = TokenLayout(64, (28, 37), 5, True)
    dense, sga = build_route("global"), build_route(SGA_VGGT)
    work = [dense.sharded_workspace_bytes(layout, 1024, split_frames(64, r), 2) for r in (2, 4, 8)]
    assert work[0] > 1.9 * work[1] > 3.6 * work[2]  # O(N/R)
    ring = dense.comm_bytes(layout, 1024, split_frames(64, 2), 2)
    kept = sga.comm_bytes(layout, 1024, split_frames(64, 2), 2)
    assert kept < ring / 5  # sigma = 9 keeps about a ninth of the patches


@pytest.mark.slow  # 20 s on 2 loaded cores: a 2-process torchrun job and the same job alone
def test_torchrun_job_with_parallel_frames_saves_the_single_process_predictions(tmp_path):
    import json
    import os
    import subprocess
    import sys

    import numpy as np

    job = [
        "model=vggt_small", "attention=avggt_9", "dataset=synthetic", "num_views=3",
        "device=cpu", "threads=1", "timing.warmup=0", "timing.repeats=1",
        "model.preprocess.size=112", "predictions.save=true", "predictions.dtype=float32",
        f"paths.cache={tmp_path / 'cache'}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2"]
    runs = {
        "alone": [sys.executable, "-m", "avggt_bench.run"],
        "sharded": [*torchrun, "-m", "avggt_bench.run", "parallel=frames"],
    }
    for name, cmd in runs.items():
        subprocess.run([*cmd, *job, f"record.dir={tmp_path / name}"], env=env, check=True)
    records = {n: list((tmp_path / n).glob("*.json")) for n in runs}
    assert [len(r) for r in records.values()] == [1, 1]  # rank 0 alone writes the record
    rec = json.loads(records["sharded"][0].read_text())
    par = rec["parallel"]
    assert rec["status"] == "ok" and rec["job"]["world_size"] == 2 == par["world_size"]
    assert par["frame_split"] == [0, 2, 3] and par["fallback_layers"] == []
    assert par["bytes_match_cost_model"] and all(p["peak_bytes"] > 0 for p in par["per_rank"])
    assert sum(par["per_rank"][0]["bytes_per_layer"]) > 0
    saved = {n: np.load(next((tmp_path / n).glob("*.predictions/*.npz"))) for n in runs}
    for key in ("extrinsics", "pose_enc", "depth", "depth_conf", "world_points"):
        ref, got = saved["alone"][key], saved["sharded"][key]
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max(), key


@pytest.mark.slow  # 20 s on 2 loaded cores
def test_torchrun_protocol_job_records_each_scenes_bytes(tmp_path):
    import json
    import os
    import subprocess
    import sys

    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "-m",
        "avggt_bench.run", "parallel=frames", "model=vggt_small", "attention=avggt_9",
        "dataset=synthetic_trajectory", "num_views=3", "device=cpu", "threads=1",
        "timing.warmup=0", "timing.repeats=1", "model.preprocess.size=112",
        f"paths.cache={tmp_path / 'cache'}", f"record.dir={tmp_path}",
    ]  # fmt: skip
    subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True)
    (path,) = tmp_path.glob("*.json")
    rec = json.loads(path.read_text())
    assert rec["status"] == "ok" and rec["parallel"]["world_size"] == 2
    assert len(rec["scenes"]) == 2
    for row in rec["scenes"]:
        assert row["parallel"]["frame_split"] == [0, 2, 3]
        assert row["parallel"]["bytes_match_cost_model"]


def test_log_sum_exp_merge_of_key_blocks_equals_softmax_over_all_keys():
    from avggt_bench.attention.lse import attn_lse, merge_lse
    from avggt_bench.attention.routes import softmax_attention

    g = torch.Generator().manual_seed(3)
    q, k, v = (3 * torch.randn(1, 2, 7, 8, generator=g, dtype=torch.float64) for _ in range(3))
    out = lse = None
    for block in (slice(0, 3), slice(3, 4), slice(4, 7)):
        part, part_lse, _ = attn_lse(q, k[:, :, block], v[:, :, block], "math")
        out, lse = merge_lse(out, lse, part, part_lse)
    assert torch.allclose(out, softmax_attention(q, k, v), rtol=0, atol=1e-13)
    assert torch.allclose(lse, torch.logsumexp(q @ k.mT / 8**0.5, -1), rtol=0, atol=1e-13)


def host_gather_worker(par: FrameParallel, frames: int, out: str) -> None:
    from avggt_bench.parallel.comm import all_gather_blocks_to_host

    split = split_frames(frames, par.world, par.rank)
    whole = torch.arange(2 * frames * 6, dtype=torch.float32).reshape(2, frames, 3, 2)
    mine = whole[:, split.start : split.stop]
    frame_bytes = 2 * 3 * 2 * 4
    got = all_gather_blocks_to_host(mine, split.counts, par.rank, par.log, chunk_bytes=frame_bytes)
    torch.save({"got": got, "whole": whole, "bytes": par.log.bytes["other"]}, f"{out}/{par.rank}")


def test_outputs_gathered_to_the_host_in_rounds_equal_one_all_gather(tmp_path):
    frames, world = 7, 3  # blocks of 3, 2, 2 frames; one frame per rank and round
    spawn_gloo(host_gather_worker, world, frames, str(tmp_path))
    for rank in range(world):
        res = torch.load(tmp_path / str(rank))
        assert torch.equal(res["got"], res["whole"])
        assert res["bytes"] == (world - 1) * 3 * (2 * 3 * 2 * 4)  # = one padded all-gather
