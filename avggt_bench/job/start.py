"""`run_job`: the resume check, the OOM skip, then the job itself (imported only when needed).

A resume hit must cost well under two seconds, so nothing here imports torch, the models or the
optional libraries (open3d, wandb, evo, matplotlib).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from avggt_bench.job.resume import existing_record, job_id, oom_below
from avggt_bench.records import Record, now_iso, write_record, writes_files

log = logging.getLogger("avggt_bench.job")
MARKER_ENV = "AVGGT_RECORD_MARKER"  # file where a job names its record (for the sweep launcher)


def run_job(cfg: DictConfig, overrides: list[str] | None = None) -> Record:
    """Run one job and write its record; never raises for failures inside the job.

    With `resume` (default) a job whose record exists with status ok or partial and the same
    config hash is not recomputed; after an out-of-memory failure at N views, the same
    configuration at more views is recorded as skipped instead of tried.
    """
    jid = job_id(cfg, overrides if overrides is not None else _overrides())
    _mark(jid.path)
    if cfg.get("resume", True):
        want = bool((cfg.get("predictions") or {}).get("save", False))
        done = existing_record(jid, want_predictions=want)
        if done is None and want and existing_record(jid) is not None:
            log.info(
                "%s: record exists without saved predictions: rerunning to save them", jid.run_id
            )
        if done is not None:
            log.info(
                "%s: %s record exists, not recomputed (resume=false reruns) -> %s",
                jid.run_id,
                done["status"],
                jid.path,
            )
            return Record(**{k: done[k] for k in Record.__dataclass_fields__ if k in done})
    oom = oom_below(jid)
    if oom is not None:
        record = Record(
            run_id=jid.run_id,
            config_hash=jid.digest,
            series_hash=jid.series,
            job=jid.job,
            config=_config(cfg),
            status="skipped",
            message=f"skipped (oom at {oom} views)",
            finished_at=now_iso(),
        )
        write_record(record, jid.path)
    else:
        from avggt_bench.job.runner import execute  # torch, models, data: only for real work

        record = execute(cfg, jid)
        _send_to_logger(cfg, record)
    log_summary(record, jid.path)
    return record


def _config(cfg: DictConfig) -> dict[str, Any]:
    return {
        k: OmegaConf.to_container(cfg[k], resolve=True) if OmegaConf.is_config(cfg[k]) else cfg[k]
        for k in cfg
    }


def _mark(path: Path) -> None:
    """Tell the sweep launcher where this job's record is (so a crash can be recorded there)."""
    marker = os.environ.get(MARKER_ENV)
    if marker:
        Path(marker).parent.mkdir(parents=True, exist_ok=True)
        Path(marker).write_text(str(path))


def _overrides() -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:  # not inside a Hydra app (tests, notebooks)
        return []


def _send_to_logger(cfg: DictConfig, record: Record) -> None:
    """The record is already safe on disk; a logger failure is reported, never fatal."""
    logger = OmegaConf.to_container(cfg.logger, resolve=True) if cfg.get("logger") else None
    if not writes_files():  # a torchrun rank other than 0 (parallel=frames)
        return
    if not logger or logger.get("name", "none") == "none":
        return
    from avggt_bench.job.loggers import log_record

    try:
        log_record(logger, record, group=_sweep_group())
    except Exception as exc:
        log.error("logger %s failed for %s: %s", logger.get("name"), record.run_id, exc)


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


def log_summary(record: Record, path: Path) -> None:
    fwd = record.timings.get("forward", {})
    acc = record.metrics.get("accuracy") if isinstance(record.metrics, dict) else None
    if record.status in ("ok", "partial") and acc:
        log.info(
            "%s: %s, %d/%d scenes evaluated (%d skipped, %d failed), forward %.3f s summed over "
            "%d scenes -> %s",
            record.run_id,
            record.status,
            acc["n_ok"],
            acc["n_scenes"],
            acc["n_skipped"],
            acc["n_failed"],
            record.timings.get("forward_total_s", float("nan")),
            record.timings.get("forward_scenes", 0),
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
        first = (record.message or "").splitlines()[0] if record.message else ""
        log.error("%s: %s%s: %s -> %s", record.run_id, record.status, where, first, path)
