"""The protocol path: every scene of a preset is its own unit.

Each scene is loaded, preprocessed, timed, evaluated with the preset's metrics and (for an
accelerated model) compared with its dense parent. An error or an out-of-memory in one scene
becomes that scene's status and message; the other scenes' rows are kept and the job is `partial`.
The job's timing is `forward_total_s` (the sum of per-scene medians over the scenes that ran);
each scene row holds its own `forward` statistics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from avggt_bench import parallel
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.data.base import FrameError, SkippedScene
from avggt_bench.data.protocol_scenes import UNREADABLE, ProtocolDataset, protocol_scenes
from avggt_bench.data.scene import Scene
from avggt_bench.errors import DataError
from avggt_bench.job.resume import requested_views
from avggt_bench.job.saving import PredictionSaver
from avggt_bench.job.units import (
    Stages,
    build,
    failure_status,
    forward_fn,
    parent_fidelity,
    timed_forward,
)
from avggt_bench.metrics.evaluate import (
    SceneResult,
    aggregate,
    evaluate_scene,
    parent_as_ground_truth,
)
from avggt_bench.metrics.evaluation_protocol import Protocol
from avggt_bench.metrics.geometry import MetricError
from avggt_bench.models.oracle import ORACLE, oracle_predictions
from avggt_bench.models.preprocess import PreprocessConfig, preprocess
from avggt_bench.models.recipes import resolve_recipe
from avggt_bench.parallel.record import parallel_facts
from avggt_bench.precision import PRECISIONS, WEIGHT_PRECISIONS
from avggt_bench.progress import progress
from avggt_bench.records import Record
from avggt_bench.records.machine import LoadMeter

log = logging.getLogger("avggt_bench.job")
RUN_FAILURES = ("error", "oom")  # scene statuses that make a job `partial`


class _Unit:
    """What every scene of the job shares: the model, the input recipe, the preset's spec and
    its evaluation protocol, validated once (a bad preset fails the job before any scene runs)."""

    def __init__(self, cfg, device, precision, record, dataset: ProtocolDataset) -> None:
        self.cfg, self.device, self.precision, self.record = cfg, device, precision, record
        self.spec = dataset.preset.as_dict()
        self.protocol = Protocol.from_preset(self.spec)
        self.fidelity_protocol = Protocol.from_preset(_fidelity_spec(self.spec))
        self.oracle = cfg.model.name == ORACLE
        self.model = None
        if not self.oracle:
            with Stages(record)("build", cfg.model.name):
                self.model = build(cfg, device, precision, record)
        self.family = cfg.model.get("family", "vggt") if self.oracle else self.model.family
        self.pre_cfg, self.recipe = resolve_recipe(
            dataset.preset.input_recipe,
            PreprocessConfig(**OmegaConf.to_container(cfg.model.preprocess, resolve=True)),
            self.family,
        )
        self.accelerated = self.model is not None and not record.model.get("is_dense", True)
        self.saver = PredictionSaver(cfg, record)


def run_protocol_job(
    cfg: DictConfig,
    device: torch.device,
    precision: str,
    record: Record,
    dataset: ProtocolDataset,
    load: LoadMeter,
) -> None:
    """Fill `record` with every scene of the preset; sets `record.status` (ok or partial) and
    raises only when no scene could be evaluated."""
    preset = dataset.preset
    views = requested_views(cfg)
    unit = _Unit(cfg, device, precision, record, dataset)
    if unit.oracle:
        record.model = {"preset": ORACLE, "family": unit.family, "weights": "ground_truth"}
    meaningful = not unit.oracle and record.model.get("weights") != "random"
    record.input = {
        "preset": preset.name,
        "task": preset.task,
        "num_views": "protocol" if views is None else views,
        "input_recipe": unit.recipe,
        "preprocess": unit.pre_cfg.__dict__,
    }
    plan = dataset.plan(views)
    results: list[Any] = []
    fid_results: list[Any] = []
    start = time.perf_counter()
    bar = progress(total=len(plan), desc=f"{preset.name} scenes", unit="scene")
    record.stage = "load"
    loaded_at = time.perf_counter()
    try:
        for position, item in enumerate(_scenes(dataset, views)):
            load_s = time.perf_counter() - loaded_at
            label = f"scene {position + 1}/{len(plan)} {item.scene_id}: "
            if isinstance(item, SkippedScene):
                results.append(item)
                record.scenes.append({**item.as_dict(), "status": "skipped"})
                log.warning("%sskipped: %s %s", label, item.reason, item.message)
            elif isinstance(item, SceneResult):  # the loader itself failed on this scene
                results.append(item)
                record.scenes.append(
                    {"scene_id": item.scene_id, "status": item.status, "message": item.message}
                )
                log.error("%s%s: %s", label, item.status, item.message.splitlines()[0])
            else:
                log.info("%sloaded in %.2f s (%d views)", label, load_s, item.num_views)
                row, result, fid = _run_scene(unit, item, load, Stages(record, label))
                row["load_s"] = load_s
                results.append(result)
                if fid is not None:
                    fid_results.append(fid)
                record.scenes.append(row)
            bar.update(1)
            record.stage = "load"
            loaded_at = time.perf_counter()
    finally:
        bar.close()
    record.stage = "aggregate"
    note = ""
    if unit.oracle:
        note = "ground-truth oracle predictions: checks the protocol, not a model"
    elif not meaningful:
        note = "random weights: accuracy is not meaningful (load a checkpoint)"
    summary = aggregate(results, unit.protocol, meaningful=meaningful, note=note)
    record.metrics = {"accuracy": summary}
    if fid_results:
        record.metrics["fidelity_protocol"] = aggregate(fid_results, unit.fidelity_protocol)
    ran = [r for r in record.scenes if "forward" in r and r.get("status") == "ok"]
    record.timings.update(
        {
            "forward_total_s": sum(r["forward"]["median_s"] for r in ran),
            "forward_scenes": len(ran),
            "load_s": sum(r.get("load_s", 0.0) for r in record.scenes),
            "metrics_s": sum(r.get("metrics_s", 0.0) for r in record.scenes),
            "fidelity_s": sum(r.get("fidelity_s", 0.0) for r in record.scenes),
            "total_s": time.perf_counter() - start,
        }
    )
    record.memory = {"peak_gb": max((r.get("peak_gb", 0.0) for r in record.scenes), default=0.0)}
    if summary["n_ok"] == 0:
        raise DataError(
            f"preset {preset.name!r}: no scene was evaluated ({summary['n_skipped']} skipped, "
            f"{summary['n_failed']} failed: "
            + "; ".join(f"{r['scene']}: {r['message']}" for r in summary["not_evaluated"][:3])
            + "); see the record's scenes and datasets/README.md"
        )
    failed = sum(r.get("status") in RUN_FAILURES for r in record.scenes)
    record.status = "partial" if failed else "ok"
    if failed:
        record.message = (
            f"{failed} of {len(record.scenes)} scenes failed ({summary['n_ok']} evaluated); "
            "see the record's scenes"
        )


class _GuardedLoader:
    """The preset's loader, with errors of our own code (KeyError, TypeError, ...) in `load` kept
    per scene: the protocol iteration goes on with the next scene (a DataError stands in for the
    bug) and the job records the scene as `error` with the traceback, never as a data skip."""

    def __init__(self, loader: Any, failures: dict[str, tuple[str, str]]) -> None:
        self._loader = loader
        self._failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)

    def with_frames(self, frames: int) -> _GuardedLoader:
        return _GuardedLoader(self._loader.with_frames(frames), self._failures)

    def load(self, sequence: str, *args: Any, **kwargs: Any) -> Scene:
        try:
            return self._loader.load(sequence, *args, **kwargs)
        except (FrameError, *UNREADABLE):
            raise  # the data's fault: the protocol skips the scene with its reason
        except Exception as exc:
            self._failures[sequence] = failure_status(exc)
            raise DataError(f"loader failed: {type(exc).__name__}: {exc}") from exc


def _scenes(
    dataset: ProtocolDataset, views: int | None
) -> Iterator[Scene | SkippedScene | SceneResult]:
    """The preset's scenes in order; a scene whose loading hit a bug of our code becomes an
    `error` SceneResult with its traceback."""
    failures: dict[str, tuple[str, str]] = {}
    guarded = _GuardedLoader(dataset.loader, failures)
    for item in protocol_scenes(dataset.preset, views, guarded):
        if isinstance(item, SkippedScene) and item.scene_id in failures:
            status, message = failures[item.scene_id]
            yield SceneResult(
                item.scene_id,
                dataset.preset.dataset,
                dataset.preset.task,
                item.category,
                status=status,
                message=f"load: {message}",
            )
        else:
            yield item


def _run_scene(
    unit: _Unit, scene: Scene, load: LoadMeter, stages: Stages
) -> tuple[dict[str, Any], SceneResult, SceneResult | None]:
    """One scene -> (record row, its SceneResult, its fidelity SceneResult or None); a failure
    inside becomes the row's status and message."""
    row: dict[str, Any] = {"scene_id": scene.scene_id, "num_views": scene.num_views}
    row.update(scene.record_fields())  # e.g. the worst accepted rotation deviation
    if scene.dropped:  # unusable frames the preset drops: listed, never silent
        row["dropped_frames"] = list(scene.dropped)
    try:
        return _evaluate(unit, scene, load, stages, row)
    except Exception as exc:
        status, message = failure_status(exc)
        row.update(status=status, message=message, stage=unit.record.stage)
        log.error(
            "%s%s in %s: %s", stages.prefix, status, unit.record.stage, message.splitlines()[0]
        )
        if unit.device.type == "cuda":
            torch.cuda.empty_cache()
        result = SceneResult(
            scene.scene_id, scene.dataset, unit.spec.get("task"), status=status, message=message
        )
        return row, result, None


def _evaluate(unit: _Unit, scene: Scene, load: LoadMeter, stages: Stages, row: dict):
    cfg, device, precision = unit.cfg, unit.device, unit.precision
    images = None
    if unit.model is None:  # ground-truth oracle: the protocol's own sanity check
        transforms = None
        with stages("forward", "ground-truth oracle") as t_fwd:
            pred = oracle_predictions(scene, unit.family, **_oracle_options(cfg))
        row["forward"] = {"median_s": t_fwd["s"], "times_s": [t_fwd["s"]]}
    else:
        par = parallel.current()  # frame-parallel: the model moves only its own frames
        with stages("preprocess"):
            pre = preprocess(scene.images, unit.pre_cfg)
            transforms = pre.transforms
            to = device if par is None else torch.device("cpu")
            images = pre.images.to(to, WEIGHT_PRECISIONS.get(precision, torch.float32))
        forward = forward_fn(cfg, unit.model, images, precision, device)
        pred, stats, memory = timed_forward(cfg, forward, device, load, stages)
        row["forward"] = stats
        row["peak_gb"] = memory.get("peak_gb", 0.0)
        row["image_hw"] = list(images.shape[-2:])
        if par is not None:  # collective: right after the forward, before any other forward
            model, patch = unit.model, unit.model.arch.patch_size
            grid = (images.shape[-2] // patch, images.shape[-1] // patch)
            layout = TokenLayout(images.shape[0], grid, model.num_special, model.family == "vggt")
            dtype = PRECISIONS.get(precision, images.dtype)
            row["parallel"] = parallel_facts(par, model, layout, memory, dtype, stats["median_s"])
    if unit.saver.enabled:
        with stages("save predictions"):
            row["predictions"] = unit.saver.save(
                scene.scene_id, scene.dataset, list(scene.frame_ids), pred, images
            )
    with stages("metrics"):
        result = evaluate_scene(pred, scene, unit.protocol, transforms)
    row.update(result.as_dict())
    row["metrics_s"] = sum(result.timings.values())
    fid = None
    if unit.accelerated and cfg.get("fidelity", True):
        with stages("fidelity") as t_fid:
            extra = {
                "preprocess": unit.pre_cfg.__dict__,
                "precision": precision,
                "device": unit.record.job["machine"],
            }
            row["fidelity_to_dense"], _, dense = parent_fidelity(
                cfg, unit.model, forward, pred, scene.images, extra, need_parent=True
            )
            try:
                parent = parent_as_ground_truth(dense, scene)
                fid = evaluate_scene(pred, parent, unit.fidelity_protocol, None)
            except MetricError as exc:
                fid = SceneResult(
                    scene.scene_id, scene.dataset, unit.spec.get("task"), status=exc.status
                )
                fid.message = str(exc)
            row["fidelity"] = {"status": fid.status, "message": fid.message, **fid.metrics}
        row["fidelity_s"] = t_fid["s"]
    return row, result, fid


def _fidelity_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The preset's metrics against the dense parent's predictions, on the network grid."""
    return {**spec, "gt_compare": "input"}


def _oracle_options(cfg: DictConfig) -> dict[str, float]:
    return {
        "rotation_noise_deg": float(cfg.model.get("rotation_noise_deg", 0.0)),
        "depth_noise": float(cfg.model.get("depth_noise", 0.0)),
    }
