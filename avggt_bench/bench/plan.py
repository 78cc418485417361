"""The plan of `make bench`: every job of every sweep, which already have records, and a time
estimate from the analytic cost model and this machine's measured MAC rate.

A job's estimate is `(warm-up + repeats) x MACs / rate + start-up`, where `rate` is measured
here with one 8-view forward of the first model and `start-up` is what importing torch and building
that model took in this process (each sweep job is a fresh process). Jobs whose record exists
cost nothing (they resume).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from avggt_bench.job.resume import JobId, existing_record, job_id
from avggt_bench.paths import REPO_DIR, config_dir
from avggt_bench.records.machine import register_resolver


@dataclass
class PlannedJob:
    sweep: str
    overrides: list[str]
    jid: JobId
    done: bool
    macs: float = 0.0
    estimate_s: float = 0.0


@dataclass
class Plan:
    jobs: list[PlannedJob] = field(default_factory=list)
    rate_macs_per_s: float | None = None
    startup_s: float = 0.0

    def of(self, sweep: str) -> list[PlannedJob]:
        return [j for j in self.jobs if j.sweep == sweep]

    @property
    def estimate_s(self) -> float:
        return sum(j.estimate_s for j in self.jobs if not j.done)


def _compose(overrides: list[str], hydra: bool = False) -> DictConfig:
    from hydra import compose, initialize_config_dir

    register_resolver()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


def sweep_jobs(experiment: str, extra: list[str]) -> list[list[str]]:
    """The override lists of every job of `experiment=<name>` with `extra` (which may sweep too:
    `num_views=8,16` replaces the experiment's own list)."""
    base = [f"experiment={experiment}"]
    plain = [o for o in extra if "," not in o.partition("=")[2]]
    cfg = _compose([*base, *plain, f"paths.root={REPO_DIR}"], hydra=True)
    params = {str(k): str(v) for k, v in (cfg.hydra.sweeper.params or {}).items()}
    for o in extra:  # the command line wins over the experiment's sweep, as in Hydra
        key, _, value = o.partition("=")
        if "," in value or key in params:
            params[key] = value
    plain = [o for o in plain if o.partition("=")[0] not in params]
    keys = list(params)
    grid = itertools.product(*(params[k].split(",") for k in keys))
    jobs = [
        [*base, *plain, *(f"{k}={v}" for k, v in zip(keys, values, strict=True))] for values in grid
    ]
    return jobs


def make_plan(sweeps: list[str], extra: list[str]) -> Plan:
    """Every job of `sweeps`, with its record path and whether it already finished."""
    plan = Plan()
    root = [o for o in extra if o.startswith("paths.root=")] or [f"paths.root={REPO_DIR}"]
    for sweep in sweeps:
        for overrides in sweep_jobs(sweep, extra):
            cfg = _compose([*overrides, *root])
            jid = job_id(cfg, overrides)
            plan.jobs.append(PlannedJob(sweep, overrides, jid, existing_record(jid) is not None))
    return plan


def estimate(plan: Plan) -> None:
    """Fill every pending job's MACs and seconds (builds each distinct model once; one timed
    forward measures this machine's MAC rate)."""
    pending = [j for j in plan.jobs if not j.done]
    if not pending:
        return
    start = time.perf_counter()
    import torch

    from avggt_bench.flops import model_cost
    from avggt_bench.job.runner import resolve_job_precision
    from avggt_bench.job.units import build
    from avggt_bench.precision import autocast_context, resolve_device
    from avggt_bench.records import Record
    from avggt_bench.records.machine import cpu_threads

    models: dict[str, Any] = {}
    for job in pending:
        cfg = _compose([*job.overrides, f"paths.root={REPO_DIR}"])
        device = resolve_device(cfg.get("device"))
        torch.set_num_threads(cpu_threads(cfg.get("threads")))
        precision = resolve_job_precision(cfg, device)
        key = OmegaConf.to_yaml(OmegaConf.create({"m": cfg.model, "a": cfg.attention}))
        if key not in models:
            scratch = Record("plan", "", {}, {})
            models[key] = build(cfg, device, precision, scratch)
            if plan.rate_macs_per_s is None:
                plan.startup_s = time.perf_counter() - start
        model = models[key]
        hw = _input_hw(cfg, model)
        views = job.jid.views or 16
        job.macs = float(model_cost(model, views, hw).total)
        if plan.rate_macs_per_s is None:
            plan.rate_macs_per_s = _measure_rate(model, hw, device, precision, autocast_context)
        runs = int(cfg.timing.warmup) + int(cfg.timing.repeats)
        job.estimate_s = runs * job.macs / plan.rate_macs_per_s + plan.startup_s
    models.clear()
    if torch.cuda.is_available():  # leave the GPU to the sweep's jobs
        torch.cuda.empty_cache()


def _input_hw(cfg: DictConfig, model: Any) -> tuple[int, int]:
    import torch

    from avggt_bench.models.preprocess import PreprocessConfig, preprocess

    width = int(cfg.dataset.get("width") or 518)
    height = int(cfg.dataset.get("height") or 392)
    pre = PreprocessConfig(**OmegaConf.to_container(cfg.model.preprocess, resolve=True))
    out = preprocess(torch.zeros(1, height, width, 3, dtype=torch.uint8), pre).images
    return int(out.shape[-2]), int(out.shape[-1])


def _measure_rate(model, hw, device, precision, autocast_context) -> float:
    """MACs per second of one 8-view forward of `model` (after a 2-view warm-up): big enough to
    run at the efficiency of the sweep's smaller jobs, short enough to cost seconds."""
    import torch

    from avggt_bench.flops import model_cost

    def run(views: int) -> float:
        images = torch.rand(views, 3, *hw, device=device)
        start = time.perf_counter()
        with torch.inference_mode(), autocast_context(precision, device):
            model(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    run(2)
    seconds = run(8)
    return model_cost(model, 8, hw).total / max(seconds, 1e-6)


def finished(job: PlannedJob) -> dict[str, Any] | None:
    """The job's record once it is no longer `running` (any final status), else None."""
    import json

    try:
        rec = json.loads(Path(job.jid.path).read_text())
    except (OSError, ValueError):
        return None
    if rec.get("config_hash") != job.jid.digest or rec.get("status") == "running":
        return None
    return rec
