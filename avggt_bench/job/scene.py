"""The single-scene path: one scene at `num_views` views -> timing, memory, cost, fidelity."""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from avggt_bench import parallel
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import layer_benchmarks, route_table
from avggt_bench.flops import model_cost
from avggt_bench.job.resume import requested_views
from avggt_bench.job.saving import PredictionSaver
from avggt_bench.job.units import Stages, build, forward_fn, parent_fidelity, timed_forward
from avggt_bench.models.preprocess import PreprocessConfig, preprocess
from avggt_bench.parallel.record import parallel_facts
from avggt_bench.precision import PRECISIONS, WEIGHT_PRECISIONS
from avggt_bench.records import Record
from avggt_bench.records.machine import LoadMeter

log = logging.getLogger("avggt_bench.job")


def run_scene_job(
    cfg: DictConfig,
    device: torch.device,
    precision: str,
    record: Record,
    dataset: Any,
    load: LoadMeter,
) -> None:
    """Fill `record` for one scene; raises on failure (the runner turns that into a status)."""
    stages = Stages(record)
    pre_cfg = PreprocessConfig(**OmegaConf.to_container(cfg.model.preprocess, resolve=True))
    with stages("load") as t_load:
        scene = dataset.load_views(requested_views(cfg))
    with stages("build", cfg.model.name):
        model = build(cfg, device, precision, record)
    par = parallel.current()  # frame-parallel: the model moves only its own frames to the GPU
    with stages("preprocess") as t_pre:
        pre = preprocess(scene.images, pre_cfg)
        to = device if par is None else torch.device("cpu")
        images = pre.images.to(to, WEIGHT_PRECISIONS.get(precision, torch.float32))
    height, width = images.shape[-2:]
    patch = model.arch.patch_size
    grid = (height // patch, width // patch)
    record.input = {
        "scene": f"{scene.dataset}/{scene.scene_id}",
        "num_views": scene.num_views,
        "source_hw": list(scene.image_hw),
        "image_hw": [height, width],
        "patch_grid": list(grid),
        "tokens_per_frame": model.num_special + grid[0] * grid[1],
        "preprocess": pre_cfg.__dict__,
    }
    log.info(
        "%s: %d views, %dx%d source -> %dx%d input, %d tokens per view, %d in global attention",
        record.input["scene"],
        scene.num_views,
        *scene.image_hw,
        height,
        width,
        record.input["tokens_per_frame"],
        record.input["tokens_per_frame"] * scene.num_views,
    )
    forward = forward_fn(cfg, model, images, precision, device)
    pred, stats, memory = timed_forward(cfg, forward, device, load, stages)
    record.timings.update({"load_s": t_load["s"], "preprocess_s": t_pre["s"], "forward": stats})
    record.memory = memory
    layout = TokenLayout(scene.num_views, grid, model.num_special, model.family == "vggt")
    if par is not None:  # collective: right after the forward, before any other forward
        dtype = PRECISIONS.get(precision, images.dtype)
        record.parallel = parallel_facts(par, model, layout, memory, dtype, stats["median_s"])
    record.model["route_layers"] = route_table(model.routes, layout)
    # after the forward: data-dependent routes (block-sparse) report their realised sparsity
    record.cost = model_cost(model, scene.num_views, (height, width)).as_dict()
    saver = PredictionSaver(cfg, record)
    if saver.enabled:
        with stages("save predictions"):
            record.input["predictions"] = saver.save(
                scene.scene_id, scene.dataset, list(scene.frame_ids), pred, images
            )
    median = stats["median_s"]
    record.metrics = {"achieved_macs_per_s": record.cost["macs"] / median if median > 0 else None}

    with stages("fidelity") as t_fid:
        if cfg.get("fidelity", True):
            extra = {
                "preprocess": pre_cfg.__dict__,
                "precision": precision,
                "device": record.job["machine"],
            }
            fid, source, _ = parent_fidelity(cfg, model, forward, pred, scene.images, extra)
            if fid is not None:
                record.metrics["fidelity"] = fid
                record.metrics["fidelity_reference"] = source
        else:  # no dense-parent reference: saves a dense forward where that is most of the cost
            record.metrics["fidelity_reference"] = "off (fidelity=false)"
    record.timings["fidelity_s"] = t_fid["s"]
    record.timings["metrics_s"] = 0.0

    with stages("layer_microbenchmark"):
        attn = model.global_block(0).attn
        dtype = PRECISIONS.get(precision, images.dtype)
        shape = (layout, attn.num_heads, attn.head_dim, device, dtype)
        benchmarks = layer_benchmarks(model.routes, *shape)
        if benchmarks:  # keyed by route string; each route says what it timed
            record.timings["layer_benchmarks"] = benchmarks
