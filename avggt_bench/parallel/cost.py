"""Cost on paper of a frame-parallel run: per-GPU memory, bytes over the links and compute.

    python -m avggt_bench.parallel.cost --out results/cluster_cost.md

Bytes are exact under the counting convention of `avggt_bench.parallel.comm` (the routes'
`comm_bytes`; the tests hold the measured bytes to them). Memory is an estimate of the largest
live tensors on the busiest rank (rank 0 holds the largest frame block), not a measurement: the
weights, the rank's tokens, the kept layers the DPT heads read, one layer's q/k/v and MLP hidden,
and the largest workspace a global layer's sharded form adds (`Route.sharded_workspace_bytes`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from avggt_bench.attention.config import resolve_routes
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import Route, build_route
from avggt_bench.flops import vggt_cost
from avggt_bench.models.vggt.model import VGGT_1B, VGGTArch
from avggt_bench.parallel.shard import split_frames

VGGT_1B_PARAMS = 1_190_596_120  # VGGT-1B without the track head (build_model("vggt"))
GRID_518x392 = (28, 37)  # 392 / 14 rows, 518 / 14 columns
OUTPUT_BYTES_PER_PIXEL = 24  # depth, depth_conf, world_points (3), world_points_conf: fp32


@dataclass(frozen=True)
class ClusterCost:
    """One (variant, views, GPUs) point of the busiest rank."""

    variant: str
    views: int
    gpus: int
    frames_per_gpu: int
    memory_bytes: int
    trunk_bytes: int
    heads_bytes: int
    outputs_bytes: int
    macs_per_gpu: float


def cluster_cost(
    variant: str,
    routes: Sequence[Route],
    views: int,
    gpus: int,
    arch: VGGTArch = VGGT_1B,
    grid: tuple[int, int] = GRID_518x392,
    itemsize: int = 2,
    weight_bytes: int = 4 * VGGT_1B_PARAMS,
) -> ClusterCost:
    """Rank 0 of `gpus` ranks running VGGT on `views` frames (activations of `itemsize` bytes:
    bf16 autocast, fp32 weights)."""
    dim = arch.embed_dim
    layout = TokenLayout(views, grid, 5, reference_frame=True)
    split = split_frames(views, gpus, 0)
    per = layout.tokens_per_frame
    own = split.count * per
    kept = len({*arch.dpt_layers, arch.depth - 1})
    resident = own * dim * itemsize * (1 + 2 * kept)  # tokens + kept layers (2C each)
    layer = own * dim * itemsize * (3 + 8)  # q/k/v, MLP hidden before and after GELU
    workspace = 0
    trunk = 0
    if gpus > 1:
        workspace = max(r.sharded_workspace_bytes(layout, dim, split, itemsize) for r in routes)
        trunk = sum(r.comm_bytes(layout, dim, split, itemsize) for r in routes)
    heads = (gpus - 1) * split.count * 2 * dim * 4  # camera tokens, fp32 heads
    pixels = arch.img_size * (grid[0] * arch.patch_size)
    outputs = (gpus - 1) * split.count * pixels * OUTPUT_BYTES_PER_PIXEL
    macs = vggt_cost(arch, views, *grid, [str(r) for r in routes]).total / gpus
    return ClusterCost(
        variant,
        views,
        gpus,
        split.count,
        weight_bytes + resident + layer + workspace,
        trunk,
        heads,
        outputs,
        macs,
    )


def variant_routes(name: str, arch: VGGTArch = VGGT_1B) -> list[Route]:
    return [build_route(r) for r in resolve_routes(name, "vggt", arch.depth)]


def table(
    views: Sequence[int],
    gpus: Sequence[int],
    variants: Sequence[str],
    tflops: float,
    link_gb_s: float,
) -> str:
    """Markdown: one table per variant, a row per (views, GPUs)."""
    parts = []
    for variant in variants:
        routes = variant_routes(variant)
        rows = [
            "| views | GPUs | frames/GPU | memory/GPU (GB) | trunk comm/GPU (GB) "
            "| heads + outputs comm/GPU (GB) | compute/GPU (s) | trunk comm (s) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for v in views:
            for g in gpus:
                c = cluster_cost(variant, routes, v, g)
                compute_s = 2 * c.macs_per_gpu / (tflops * 1e12)
                comm_s = c.trunk_bytes / (link_gb_s * 1e9)
                rows.append(
                    f"| {v} | {g} | {c.frames_per_gpu} | {c.memory_bytes / 1e9:.1f} "
                    f"| {c.trunk_bytes / 1e9:.2f} | {(c.heads_bytes + c.outputs_bytes) / 1e9:.2f} "
                    f"| {compute_s:.1f} | {comm_s:.2f} |"
                )
        layers = ", ".join(sorted({f"{r} ({r.sharding})" for r in routes}))
        parts += ["", f"## {variant}", "", f"Global layers: {layers}.", "", *rows]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m avggt_bench.parallel.cost",
        description="Per-GPU memory, communication and compute of frame-parallel VGGT-1B at "
        "518x392 from the cost model (dense vs AVGGT(9)).",
    )
    parser.add_argument("--views", default="1000,2000,5000,10000")
    parser.add_argument("--gpus", default="1,2,3,4,5,6,7,8")
    parser.add_argument("--variants", default="dense,avggt_9")
    parser.add_argument("--tflops", type=float, default=400.0, help="sustained bf16 TFLOP/s")
    parser.add_argument("--link-gb-s", type=float, default=450.0, help="GB/s into one GPU")
    parser.add_argument("--out", help="write the markdown to this file")
    args = parser.parse_args(argv)
    views = [int(v) for v in args.views.split(",")]
    gpus = [int(g) for g in args.gpus.split(",")]
    header = [
        "# Frame-parallel VGGT-1B at 518x392: cost on paper per GPU",
        "",
        "Generated by `python -m avggt_bench.parallel.cost --out results/cluster_cost.md`; do not"
        " edit by hand. Frames split in contiguous blocks over the GPUs; every number is for the"
        " busiest GPU (rank 0, the largest block). bf16 activations, fp32 weights (4.76 GB).",
        "",
        "* **memory/GPU**: an estimate of the largest live tensors (weights, the GPU's tokens, the"
        " 4 kept layers the DPT heads read, one layer's q/k/v and MLP hidden, the largest"
        " workspace of a global layer's sharded form); the DPT heads' 8-frame working set is not"
        " included; the gathered outputs go to host memory, a few frames at a time.",
        "* **trunk comm/GPU**: bytes this GPU receives in the 24 global layers of one forward"
        " (exact; the counting convention of `avggt_bench/parallel/comm.py`, checked against the"
        " measured bytes by `tests/test_parallel.py`). Dense: ring attention passes every other"
        " GPU's K/V block through each GPU once per layer; AVGGT(9): the 9 early layers are"
        " per-frame (no communication), the 15 SGA layers all-gather the kept K/V (about 1/9 of"
        " the patches, plus frame 0 and the special tokens) and all-reduce the mean-fill sums.",
        "* **heads + outputs comm/GPU**: the camera tokens the camera head gathers and the"
        " full-resolution outputs (depth, points, confidences in fp32) all-gathered into every"
        " rank's host memory so that the job scores them unchanged: with AVGGT(9) this is about"
        " half the trunk's traffic; a gather to rank 0 alone would leave the other GPUs only"
        " the camera tokens.",
        f"* **compute/GPU**: analytic MACs (`avggt_bench.flops`) / GPUs at {args.tflops:g}"
        f" TFLOP/s sustained; **trunk comm (s)**: trunk bytes at {args.link_gb_s:g} GB/s into"
        " one GPU (NVLink-class). Ring steps overlap the transfer of the next block with the"
        " attention on the current one, so dense stays compute-bound while trunk comm (s) is"
        " well below compute/GPU.",
    ]
    text = (
        "\n".join(header)
        + "\n"
        + table(views, gpus, args.variants.split(","), args.tflops, args.link_gb_s)
    )
    text += "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
