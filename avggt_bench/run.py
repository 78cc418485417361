"""The Hydra job: one model + attention variant + dataset + view count -> one JSON record.

    python -m avggt_bench.run model=vggt_small attention=dense dataset=synthetic num_views=16
    python -m avggt_bench.run -m num_views=8,16,32

`run_job(cfg)` is the plain function behind it (used by tests and other harnesses). Failures inside
the job (bad data, out of memory) become a record with a status and a message; the process exits
non-zero for a single failed run, while a multirun sweep goes on.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from avggt_bench.attention.avggt import SGARoute
from avggt_bench.attention.block_sparse import BlockSparseRoute
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import is_dense, route_table
from avggt_bench.data.base import SkippedScene
from avggt_bench.data.datasets import build_dataset
from avggt_bench.data.protocol import ProtocolDataset
from avggt_bench.data.scene import Scene
from avggt_bench.errors import AvggtError, ConfigError, DataError
from avggt_bench.flops import model_cost
from avggt_bench.loggers import log_record
from avggt_bench.metrics.evaluate import (
    SceneResult,
    aggregate,
    evaluate_scene,
    parent_as_ground_truth,
)
from avggt_bench.metrics.fidelity import Reference, fidelity
from avggt_bench.metrics.geometry import MetricError
from avggt_bench.microbench import block_sparse_kernels, sga_overhead
from avggt_bench.models import build_model, model_info
from avggt_bench.models.oracle import ORACLE, oracle_predictions
from avggt_bench.models.preprocess import PreprocessConfig, preprocess
from avggt_bench.models.recipes import resolve_recipe
from avggt_bench.parent import (
    dense_parent_predictions,
    dense_parent_reference,
    load_reference,
    reference_key,
    save_reference,
)
from avggt_bench.paths import config_dir
from avggt_bench.precision import (
    PRECISIONS,
    WEIGHT_PRECISIONS,
    autocast_context,
    resolve_device,
    resolve_precision,
)
from avggt_bench.progress import progress
from avggt_bench.records import (
    Record,
    config_hash,
    device_slug,
    find_records,
    now_iso,
    provenance,
    read_record,
    write_record,
)
from avggt_bench.timing import stopwatch, time_repeats

log = logging.getLogger("avggt_bench.run")


def _device_slug_resolver(device: str | None = None) -> str:
    try:
        return device_slug(resolve_device(device))
    except ConfigError:
        return "unknown-device"


if not OmegaConf.has_resolver("device_slug"):
    OmegaConf.register_new_resolver("device_slug", _device_slug_resolver)


PLAIN_LOADER_VIEWS = 16  # num_views=null on a plain loader (synthetic, folder)


def requested_views(cfg: DictConfig) -> int | None:
    """The job's view count: an int, or None for a protocol preset's own frame selection.

    `num_views: null` (or `protocol`) means the dataset's own count: the preset's sampling for a
    protocol preset, 16 views for the plain synthetic / folder loaders.
    """
    value = cfg.get("num_views")
    if value in (None, "protocol", "null"):
        return None if "task" in cfg.dataset else PLAIN_LOADER_VIEWS
    try:
        views = int(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"num_views={value!r} is not a number; use a positive integer, or null / protocol "
            "for the dataset preset's own frame selection"
        ) from exc
    if views < 1:
        raise ConfigError(f"num_views={views}: a scene needs at least one view")
    return views


def job_identity(cfg: DictConfig, device: torch.device, precision: str) -> dict[str, Any]:
    """The config fields that define a run (what the resume hash covers)."""
    return {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "attention": OmegaConf.to_container(cfg.attention, resolve=True),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "num_views": requested_views(cfg),
        "seed": int(cfg.seed),
        "device": device_slug(device),
        "precision": precision,
        "threads": cfg.get("threads"),
        "timing": OmegaConf.to_container(cfg.timing, resolve=True),
    }


def _overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside a Hydra app (tests, notebooks)
        return []


def run_job(cfg: DictConfig) -> Record:
    """Run one job and write its record; never raises for failures inside the job.

    With `resume` (default) a job whose record exists with status ok and the same config hash is
    not recomputed; after an out-of-memory failure at N views, the same configuration at more
    views is recorded as skipped instead of tried.
    """
    device = resolve_device(cfg.get("device"))
    precision = resolve_precision(cfg.get("precision"), device)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    identity = job_identity(cfg, device, precision)
    views = identity["num_views"]
    digest = config_hash(identity)
    series = config_hash({k: v for k, v in identity.items() if k != "num_views"})
    job = {
        "model": cfg.model.name,
        "attention": cfg.attention.get("name", "custom"),
        "dataset": cfg.dataset.name,
        "num_views": views,
        "device": device_slug(device),
        "precision": precision,
        "tag": cfg.record.get("tag"),
        "overrides": _overrides(),
    }
    shown = "protocol" if views is None else views
    run_id = f"{job['model']}-{job['attention']}-{job['dataset']}-v{shown}-{digest[:10]}"
    path = Path(cfg.record.dir) / f"{run_id}.json"
    if cfg.get("resume", True):
        done = _existing_ok(path, digest)
        if done is not None:
            log.info(
                "%s: ok record exists, not recomputed (resume=false reruns) -> %s", run_id, path
            )
            return done
    record = Record(
        run_id=run_id,
        config_hash=digest,
        series_hash=series,
        job=job,
        config=OmegaConf.to_container(cfg, resolve=True),
        provenance={**provenance(device), "seed": int(cfg.seed), "precision": precision},
    )
    oom = None if views is None else _oom_below(Path(cfg.record.dir), series, views)
    if oom is not None:
        record.status, record.message = "skipped", f"skipped (oom at {oom} views)"
        record.finished_at = now_iso()
        write_record(record, path)
        _log_summary(record, path)
        return record
    torch.manual_seed(int(cfg.seed))
    try:
        _execute(cfg, device, precision, record)
        record.status, record.stage = "ok", None
    except torch.OutOfMemoryError as exc:
        record.status, record.message = "oom", f"out of memory: {str(exc).splitlines()[0]}"
    except MemoryError as exc:
        record.status, record.message = "oom", f"out of memory (host): {exc}"
    except AvggtError as exc:
        record.status, record.message = "error", f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        if is_cpu_oom(exc):
            record.status, record.message = "oom", f"out of memory (CPU): {str(exc)[:300]}"
        else:  # unexpected: keep the traceback in the record
            record.status = "error"
            record.message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    finally:
        record.finished_at = now_iso()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    write_record(record, path)
    _log_summary(record, path)
    _send_to_logger(cfg, record)
    return record


def _send_to_logger(cfg: DictConfig, record: Record) -> None:
    """The record is already safe on disk; a logger failure is reported, never fatal."""
    logger = OmegaConf.to_container(cfg.logger, resolve=True) if cfg.get("logger") else None
    try:
        log_record(logger, record, group=_sweep_group())
    except Exception as exc:
        log.error("logger %s failed for %s: %s", (logger or {}).get("name"), record.run_id, exc)


def _sweep_group() -> str | None:
    """The sweep a job belongs to (for grouping runs): set by the subprocess launcher, else
    the multirun folder's name."""
    if os.environ.get("AVGGT_SWEEP_GROUP"):
        return os.environ["AVGGT_SWEEP_GROUP"]
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        return Path(hc.sweep.dir).name if hc.mode.name == "MULTIRUN" else None
    except ValueError:
        return None


def is_cpu_oom(exc: BaseException) -> bool:
    """PyTorch's CPU allocator reports exhaustion as a RuntimeError."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "DefaultCPUAllocator: can't allocate memory" in text or "not enough memory" in text
    )


def _existing_ok(path: Path, digest: str) -> Record | None:
    try:
        rec = read_record(path)
    except (OSError, ValueError):
        return None
    if rec.get("status") != "ok" or rec.get("config_hash") != digest:
        return None
    keep = {k: rec[k] for k in Record.__dataclass_fields__ if k in rec}
    return Record(**keep)


def _oom_below(folder: Path, series: str, views: int) -> int | None:
    """The smallest view count of the same configuration that ran out of memory, if <= views."""
    sizes = [
        r["job"]["num_views"]
        for r in find_records(folder, series_hash=series, status="oom")
        if r.get("job", {}).get("num_views", views + 1) <= views
    ]
    return min(sizes) if sizes else None


def _execute(cfg: DictConfig, device: torch.device, precision: str, record: Record) -> None:
    record.stage = "load"
    dataset = build_dataset(cfg.dataset)
    if isinstance(dataset, ProtocolDataset):
        _execute_protocol(cfg, device, precision, record, dataset)
    else:
        _execute_scene(cfg, device, precision, record, dataset)


def _build(cfg: DictConfig, device: torch.device, precision: str, record: Record) -> Any:
    """The model of the job (weights cast for the VGGT* policy); fills `record.model`."""
    record.stage = "build"
    with stopwatch() as t_build:
        model = build_model(
            cfg.model.name,
            attention=cfg.attention,
            checkpoint=cfg.model.get("checkpoint"),
            memory_lean=cfg.model.get("memory_lean", True),
            sdpa_policy=cfg.model.get("sdpa_policy", "official"),
            device=str(device),
        )
    record.model = {
        **model_info(model),
        "routes": model.route_strings,
        "attention": model.attention_config,
    }
    if precision in WEIGHT_PRECISIONS:
        if model.family != "vggt":
            raise ConfigError(f"precision={precision} (VGGT*) is defined for VGGT models only")
        model.to(WEIGHT_PRECISIONS[precision])
    record.timings["model_build_s"] = t_build["s"]
    return model


def _forward_fn(
    cfg: DictConfig, model: Any, images: torch.Tensor, precision: str, device: torch.device
) -> Callable[[], Any]:
    simulate_oom = (cfg.get("debug") or {}).get("simulate_oom_from_views")
    views = images.shape[0]

    def forward() -> Any:
        if simulate_oom is not None and views >= int(simulate_oom):
            raise torch.OutOfMemoryError(f"simulated out of memory at {views} views")
        with torch.inference_mode(), autocast_context(precision, device):
            return model(images)

    return forward


def _execute_scene(
    cfg: DictConfig, device: torch.device, precision: str, record: Record, dataset: Any
) -> None:
    """One scene at `num_views` views: timing, memory, cost and fidelity to the dense parent."""
    pre_cfg = PreprocessConfig(**OmegaConf.to_container(cfg.model.preprocess, resolve=True))
    with stopwatch() as t_load:
        scene = dataset.load_views(requested_views(cfg))
    model = _build(cfg, device, precision, record)
    record.stage = "preprocess"
    with stopwatch(device) as t_pre:
        pre = preprocess(scene.images, pre_cfg)
        images = pre.images.to(device, WEIGHT_PRECISIONS.get(precision, torch.float32))
    height, width = images.shape[-2:]
    patch = model.arch.patch_size
    record.input = {
        "scene": f"{scene.dataset}/{scene.scene_id}",
        "num_views": scene.num_views,
        "source_hw": list(scene.image_hw),
        "image_hw": [height, width],
        "patch_grid": [height // patch, width // patch],
        "tokens_per_frame": model.num_special + (height // patch) * (width // patch),
        "preprocess": pre_cfg.__dict__,
    }
    forward = _forward_fn(cfg, model, images, precision, device)

    record.stage = "forward"
    pred, stats, memory = time_repeats(
        forward, device, int(cfg.timing.warmup), int(cfg.timing.repeats)
    )
    record.timings.update(
        {"load_s": t_load["s"], "preprocess_s": t_pre["s"], "forward": stats.as_dict()}
    )
    record.memory = memory.as_dict()
    layout = TokenLayout(
        scene.num_views,
        (height // patch, width // patch),
        model.num_special,
        model.family == "vggt",
    )
    record.model["route_layers"] = route_table(model.routes, layout)
    # after the forward: data-dependent routes (block-sparse) report their realised sparsity
    record.cost = model_cost(model, scene.num_views, (height, width)).as_dict()
    median = stats.median_s
    record.metrics = {"achieved_macs_per_s": record.cost["macs"] / median if median > 0 else None}
    record.model["is_dense"] = is_dense(model.routes)

    record.stage = "fidelity"
    with stopwatch(device) as t_fid:
        key = reference_key(
            model,
            scene.images,
            {"preprocess": pre_cfg.__dict__, "precision": precision, "device": device_slug(device)},
        )
        cache = Path(cfg.paths.cache) / "dense_reference"
        ours = Reference.from_predictions(pred)
        if is_dense(model.routes):
            save_reference(cache, key, ours)
        else:
            dense = load_reference(cache, key)
            record.metrics["fidelity_reference"] = "cache" if dense else "computed"
            if dense is None:
                dense = dense_parent_reference(model, forward)
                save_reference(cache, key, dense)
            record.metrics["fidelity"] = fidelity(ours, dense, pair_order=model.family)
    record.timings["fidelity_s"] = t_fid["s"]
    record.timings["metrics_s"] = 0.0

    record.stage = "layer_microbenchmark"
    attn = model.global_block(0).attn
    dtype = PRECISIONS.get(precision, images.dtype)
    shape = (layout, attn.num_heads, attn.head_dim, device, dtype)
    sga = next((r for r in model.routes if isinstance(r, SGARoute)), None)
    if sga is not None and sga.describe(layout)["path"] == "sga":
        record.timings["sga_layer"] = sga_overhead(sga, *shape)
    sparse = next((r for r in model.routes if isinstance(r, BlockSparseRoute)), None)
    if sparse is not None:
        record.timings["block_sparse_layer"] = block_sparse_kernels(sparse, *shape)


def _execute_protocol(
    cfg: DictConfig,
    device: torch.device,
    precision: str,
    record: Record,
    dataset: ProtocolDataset,
) -> None:
    """Every scene of a protocol preset: forward, the preset's metrics, fidelity to the dense
    parent (accelerated variants), per-scene rows; skipped and failed scenes are counted."""
    preset = dataset.preset
    spec = preset.as_dict()
    views = requested_views(cfg)
    oracle = cfg.model.name == ORACLE
    model = None if oracle else _build(cfg, device, precision, record)
    family = cfg.model.get("family", "vggt") if oracle else model.family
    pre_cfg, recipe = resolve_recipe(
        preset.input_recipe,
        PreprocessConfig(**OmegaConf.to_container(cfg.model.preprocess, resolve=True)),
        family,
    )
    if oracle:
        record.model = {"preset": ORACLE, "family": family, "weights": "ground_truth"}
    dense_model = model is not None and is_dense(model.routes)
    meaningful = not oracle and record.model.get("weights") != "random"
    record.input = {
        "preset": preset.name,
        "task": preset.task,
        "num_views": "protocol" if views is None else views,
        "input_recipe": recipe,
        "preprocess": pre_cfg.__dict__,
    }
    results: list[Any] = []
    fid_results: list[Any] = []
    rows: list[dict[str, Any]] = []
    totals = {"forward_s": 0.0, "load_s": 0.0, "metrics_s": 0.0, "fidelity_s": 0.0}
    peak = 0.0
    plan_start = time.perf_counter()
    scenes = iter(dataset.scenes(views))
    bar = progress(desc=f"{preset.name} scenes", unit="scene")
    try:
        while True:
            record.stage = "load"
            t0 = time.perf_counter()
            item = next(scenes, None)
            totals["load_s"] += time.perf_counter() - t0
            if item is None:
                break
            bar.update(1)
            record.stage = f"scene {item.scene_id}"
            if isinstance(item, SkippedScene):
                results.append(item)
                rows.append({"scene_id": item.scene_id, "status": "skipped", **item.as_dict()})
                log.warning("%s: scene %s skipped: %s", preset.name, item.scene_id, item.reason)
                continue
            row, result, fid = _protocol_scene(
                cfg, device, precision, model, family, item, pre_cfg, spec, dense_model
            )
            results.append(result)
            if fid is not None:
                fid_results.append(fid)
            rows.append(row)
            totals["forward_s"] += row.get("forward_s", 0.0)
            totals["metrics_s"] += row.get("metrics_s", 0.0)
            totals["fidelity_s"] += row.get("fidelity_s", 0.0)
            peak = max(peak, row.get("peak_gb", 0.0))
    finally:
        bar.close()
    record.stage = "aggregate"
    note = ""
    if oracle:
        note = "ground-truth oracle predictions: checks the protocol, not a model"
    elif not meaningful:
        note = "random weights: accuracy is not meaningful (load a checkpoint)"
    summary = aggregate(results, spec, meaningful=meaningful, note=note)
    record.metrics = {"accuracy": summary}
    if fid_results:
        record.metrics["fidelity_protocol"] = aggregate(fid_results, _fidelity_spec(spec))
    record.scenes = rows
    record.timings.update(
        {
            **totals,
            "total_s": time.perf_counter() - plan_start,
            "forward": {"median_s": totals["forward_s"], "per": "sum over evaluated scenes"},
        }
    )
    record.memory = {"peak_gb": peak}
    if summary["n_ok"] == 0:
        raise DataError(
            f"preset {preset.name!r}: no scene was evaluated ({summary['n_skipped']} skipped, "
            f"{summary['n_failed']} failed: "
            + "; ".join(f"{r['scene']}: {r['message']}" for r in summary["not_evaluated"][:3])
            + "); see the record's scenes and datasets/README.md"
        )


def _protocol_scene(
    cfg: DictConfig,
    device: torch.device,
    precision: str,
    model: Any,
    family: str,
    scene: Scene,
    pre_cfg: PreprocessConfig,
    spec: dict[str, Any],
    dense_model: bool,
) -> tuple[dict[str, Any], Any, Any]:
    """One protocol scene → (record row, its SceneResult, its fidelity SceneResult or None)."""
    row: dict[str, Any] = {"scene_id": scene.scene_id, "num_views": scene.num_views}
    if scene.dropped:  # unusable frames the preset drops: listed, never silent
        row["dropped_frames"] = list(scene.dropped)
    if model is None:  # ground-truth oracle: the protocol's own sanity check
        transforms = None
        with stopwatch() as t_fwd:
            pred = oracle_predictions(scene, family, **_oracle_options(cfg))
        row["forward_s"] = t_fwd["s"]
    else:
        pre = preprocess(scene.images, pre_cfg)
        transforms = pre.transforms
        images = pre.images.to(device, WEIGHT_PRECISIONS.get(precision, torch.float32))
        forward = _forward_fn(cfg, model, images, precision, device)
        pred, stats, memory = time_repeats(
            forward, device, int(cfg.timing.warmup), int(cfg.timing.repeats)
        )
        row["forward_s"] = stats.median_s
        row["peak_gb"] = memory.as_dict().get("peak_gb", 0.0)
        row["image_hw"] = list(images.shape[-2:])
    result = evaluate_scene(pred, scene, spec, transforms)
    row.update(result.as_dict())
    row["metrics_s"] = sum(result.timings.values())
    fid = None
    if model is not None and not dense_model:
        start = time.perf_counter()
        dense = dense_parent_predictions(model, forward)
        try:
            parent = parent_as_ground_truth(dense, scene)
            fid = evaluate_scene(pred, parent, _fidelity_spec(spec), None)
        except MetricError as exc:
            fid = SceneResult(scene.scene_id, scene.dataset, spec.get("task"), status=exc.status)
            fid.message = str(exc)
        row["fidelity"] = {"status": fid.status, "message": fid.message, **fid.metrics}
        row["fidelity_s"] = time.perf_counter() - start
    return row, result, fid


def _fidelity_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The preset's metrics against the dense parent's predictions, on the network grid."""
    return {**spec, "gt_compare": "input"}


def _oracle_options(cfg: DictConfig) -> dict[str, float]:
    return {
        "rotation_noise_deg": float(cfg.model.get("rotation_noise_deg", 0.0)),
        "depth_noise": float(cfg.model.get("depth_noise", 0.0)),
    }


def _log_summary(record: Record, path: Path) -> None:
    fwd = record.timings.get("forward", {})
    acc = record.metrics.get("accuracy") if isinstance(record.metrics, dict) else None
    if record.status == "ok" and acc:
        log.info(
            "%s: ok, %d/%d scenes evaluated (%d skipped, %d failed), forward %.3f s in all -> %s",
            record.run_id,
            acc["n_ok"],
            acc["n_scenes"],
            acc["n_skipped"],
            acc["n_failed"],
            fwd.get("median_s", float("nan")),
            path,
        )
    elif record.status == "ok":
        log.info(
            "%s: ok, forward median %.3f s over %d repeats, peak %.2f GB -> %s",
            record.run_id,
            fwd.get("median_s", float("nan")),
            len(fwd.get("times_s", [])),
            record.memory.get("peak_gb", float("nan")),
            path,
        )
    else:
        where = f" (stage {record.stage})" if record.stage else ""
        log.error("%s: %s%s: %s -> %s", record.run_id, record.status, where, record.message, path)


def _is_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> str:
    record = run_job(cfg)
    if record.status != "ok" and not _is_multirun():
        raise SystemExit(1)
    return record.status


def main(argv: list[str] | None = None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    _hydra_main()


if __name__ == "__main__":
    main()
