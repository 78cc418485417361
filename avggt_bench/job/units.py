"""What both job paths share: stage logging, the model, the timed forward, the dense-parent
fidelity, and the mapping of an exception to a status.

A job is a list of scene units (one for a single-scene job, the preset's scenes for a protocol
job); each unit's forward is timed the same way and yields the same `forward` statistics dict.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from avggt_bench.attention.routes import is_dense
from avggt_bench.errors import AvggtError, ConfigError
from avggt_bench.machine import LoadMeter
from avggt_bench.metrics.fidelity import Reference, fidelity
from avggt_bench.models import model_from_config, model_info
from avggt_bench.parent import (
    dense_parent_predictions,
    load_reference,
    reference_key,
    save_reference,
)
from avggt_bench.precision import WEIGHT_PRECISIONS, autocast_context
from avggt_bench.records import Record
from avggt_bench.timing import time_repeats

log = logging.getLogger("avggt_bench.job")


class Stages:
    """Sets `record.stage` and logs each stage's start and duration (so a long job is never
    silent): `with stages("build"): ...`."""

    def __init__(self, record: Record, prefix: str = "") -> None:
        self.record = record
        self.prefix = prefix

    @contextmanager
    def __call__(self, name: str, detail: str = "") -> Iterator[dict[str, float]]:
        self.record.stage = name
        label = f"{self.prefix}{name}"
        log.info("%s%s ...", label, f" ({detail})" if detail else "")
        box = {"s": float("nan")}
        start = time.perf_counter()
        yield box
        box["s"] = time.perf_counter() - start
        log.info("%s done in %.2f s", label, box["s"])


def failure_status(exc: BaseException) -> tuple[str, str]:
    """(status, message) of an exception inside a job or a scene: `oom` for memory exhaustion,
    `error` otherwise; errors of our own code keep their traceback."""
    if isinstance(exc, torch.OutOfMemoryError):
        return "oom", f"out of memory: {str(exc).splitlines()[0] if str(exc) else ''}"
    if isinstance(exc, MemoryError):
        return "oom", f"out of memory (host): {exc}"
    if is_cpu_oom(exc):
        return "oom", f"out of memory (CPU): {str(exc)[:300]}"
    if isinstance(exc, AvggtError):
        return "error", f"{type(exc).__name__}: {exc}"
    return "error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"


def is_cpu_oom(exc: BaseException) -> bool:
    """PyTorch's CPU allocator reports exhaustion as a RuntimeError."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "DefaultCPUAllocator: can't allocate memory" in text or "not enough memory" in text
    )


def build(cfg: DictConfig, device: torch.device, precision: str, record: Record) -> Any:
    """The model of the job (weights cast for the VGGT* policy); fills `record.model`."""
    start = time.perf_counter()
    model = model_from_config(cfg, device)
    record.model = {
        **model_info(model),
        "routes": model.route_strings,
        "attention": model.attention_config,
        "is_dense": is_dense(model.routes),
    }
    if precision in WEIGHT_PRECISIONS:
        if model.family != "vggt":
            raise ConfigError(f"precision={precision} (VGGT*) is defined for VGGT models only")
        model.to(WEIGHT_PRECISIONS[precision])
    record.timings["model_build_s"] = time.perf_counter() - start
    return model


def forward_fn(
    cfg: DictConfig, model: Any, images: torch.Tensor, precision: str, device: torch.device
) -> Callable[[], Any]:
    debug = cfg.get("debug") or {}
    simulate_oom = debug.get("simulate_oom_from_views")
    simulate_crash = debug.get("simulate_crash_from_views")
    views = images.shape[0]

    def forward() -> Any:
        if simulate_crash is not None and views >= int(simulate_crash):
            os.kill(os.getpid(), signal.SIGKILL)  # a hard death: no handler, no record update
        if simulate_oom is not None and views >= int(simulate_oom):
            raise torch.OutOfMemoryError(f"simulated out of memory at {views} views")
        with torch.inference_mode(), autocast_context(precision, device):
            return model(images)

    return forward


def timed_forward(
    cfg: DictConfig,
    forward: Callable[[], Any],
    device: torch.device,
    load: LoadMeter,
    stages: Stages,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Warm-up and timed repeats of one unit's forward -> (prediction, forward stats, memory).

    The repeats are logged one by one; `load` measures other processes' CPU use meanwhile.
    """
    warmup, repeats = int(cfg.timing.warmup), int(cfg.timing.repeats)
    done = {"n": 0}

    def logged() -> Any:
        start = time.perf_counter()
        out = forward()
        done["n"] += 1
        if done["n"] <= warmup:
            log.info(
                "%swarm-up %d/%d: %.3f s",
                stages.prefix,
                done["n"],
                warmup,
                time.perf_counter() - start,
            )
        else:
            log.info(
                "%srepeat %d/%d: %.3f s",
                stages.prefix,
                done["n"] - warmup,
                repeats,
                time.perf_counter() - start,
            )
        return out

    with stages("forward", f"{warmup} warm-up + {repeats} timed"), load.measure():
        pred, stats, memory = time_repeats(logged, device, warmup, repeats)
    return pred, stats.as_dict(), memory.as_dict()


def parent_fidelity(
    cfg: DictConfig,
    model: Any,
    forward: Callable[[], Any],
    pred: Any,
    scene_images: torch.Tensor,
    key_extra: dict[str, Any],
    need_parent: bool = False,
) -> tuple[dict[str, Any] | None, str | None, Any]:
    """Fidelity of an accelerated model to its dense parent on the same input.

    The dense model stores its compact reference (keyed by weights, input bytes and settings) so
    that the variants of a sweep read it instead of recomputing it. Returns (fidelity or None for
    a dense model, where the reference came from, the dense parent's full predictions when they
    were computed here or `need_parent` asks for them).
    """
    key = reference_key(model, scene_images, key_extra)
    cache = Path(cfg.paths.cache) / "dense_reference"
    ours = Reference.from_predictions(pred)
    if is_dense(model.routes):
        save_reference(cache, key, ours)
        return None, None, None
    dense = load_reference(cache, key)
    source, parent_pred = "cache", None
    if dense is None:
        source = "computed"
        parent_pred = dense_parent_predictions(model, forward)
        dense = Reference.from_predictions(parent_pred)
        save_reference(cache, key, dense)
    elif need_parent:
        parent_pred = dense_parent_predictions(model, forward)
    return fidelity(ours, dense, pair_order=model.family), source, parent_pred
