"""External loggers. wandb lives here and nowhere else (imported only when used).

`logger=wandb`: each job becomes a wandb run named by its overrides and grouped by its sweep, with
the resolved config, a summary of the record (status, timings, memory, cost, metrics), the timing
repeats and a per-scene table when the job has one; the run is always finished, also when the job
failed. The mode comes from `WANDB_MODE` and is `offline` unless set, so no account is needed;
`wandb sync wandb/offline-run-*` uploads later.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from avggt_bench.records import Record

log = logging.getLogger(__name__)


def _wandb():
    try:
        import wandb
    except ImportError as exc:  # pragma: no cover - wandb is a dependency
        raise RuntimeError("logger=wandb needs the wandb package: pip install wandb") from exc
    return wandb


def flat_summary(record: Record) -> dict[str, Any]:
    """The numbers a dashboard plots, flattened to `section/name` keys."""
    fwd = record.timings.get("forward", {})
    out: dict[str, Any] = {
        "status": record.status,
        "num_views": record.job.get("num_views"),
        "forward/median_s": fwd.get("median_s"),
        "forward/spread_s": fwd.get("spread_s"),
        "forward/total_s": record.timings.get("forward_total_s"),
        "memory/peak_gb": record.memory.get("peak_gb"),
        "cost/macs": record.cost.get("macs"),
        "weights": record.model.get("weights"),
    }
    for key in ("load_s", "model_build_s", "preprocess_s", "fidelity_s", "metrics_s"):
        out[f"timings/{key}"] = record.timings.get(key)
    for key, value in record.metrics.items():
        if isinstance(value, Mapping):
            out.update({f"{key}/{k}": v for k, v in value.items() if _scalar(v)})
        elif _scalar(value):
            out[f"metrics/{key}"] = value
    if record.message:
        out["message"] = record.message.splitlines()[0][:500]
    return {k: v for k, v in out.items() if v is not None}


def _table_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A scene row without its bulky parts (per-frame lists, repeat times), as table columns."""
    drop = ("groups", "outputs", "frame_ids", "dropped", "dropped_frames")
    out = {k: v for k, v in row.items() if k not in drop}
    if isinstance(out.get("forward"), Mapping):
        out["forward"] = {k: v for k, v in out["forward"].items() if _scalar(v)}
    if isinstance(out.get("message"), str):
        out["message"] = out["message"].splitlines()[0][:300] if out["message"] else ""
    return out


def _scalar(value: Any) -> bool:
    return isinstance(value, int | float | str | bool)


def run_name(overrides: list[str]) -> str:
    keep = [o for o in overrides if not o.startswith(("hydra", "paths.", "record."))]
    return ",".join(keep)[:120] or "default"


def log_record(logger_cfg: Mapping[str, Any] | None, record: Record, group: str | None) -> None:
    """Send one job's record to the configured logger (`none` does nothing)."""
    if not logger_cfg or logger_cfg.get("name", "none") == "none":
        return
    if logger_cfg["name"] != "wandb":
        raise ValueError(f"unknown logger {logger_cfg['name']!r}; valid: none, wandb")
    wandb = _wandb()
    mode = logger_cfg.get("mode") or os.environ.get("WANDB_MODE") or "offline"
    directory = Path(logger_cfg.get("dir") or ".")
    directory.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=logger_cfg.get("project", "avggt_bench"),
        entity=logger_cfg.get("entity"),
        mode=mode,
        group=logger_cfg.get("group") or group,
        name=run_name(record.job.get("overrides", [])),
        job_type="benchmark",
        tags=[*list(logger_cfg.get("tags") or []), record.job.get("model", ""), record.status],
        config=record.config,
        dir=str(directory),
        reinit="finish_previous",
    )
    try:
        for i, t in enumerate(record.timings.get("forward", {}).get("times_s", [])):
            run.log({"forward/repeat_s": t, "repeat": i})
        if record.scenes:  # protocol jobs: one row per scene (status, message, metrics, timing)
            rows = [_table_row(row) for row in record.scenes]
            run.log({"per_scene": wandb.Table(dataframe=pd.json_normalize(rows))})
        run.summary.update(flat_summary(record))
    finally:
        run.finish(exit_code=0 if record.status in ("ok", "skipped") else 1)


def push_report(paths: Mapping[str, Path], df: pd.DataFrame, project: str = "avggt_bench") -> None:
    """Upload the report's tables and plots as one wandb run (mode from WANDB_MODE, offline)."""
    wandb = _wandb()
    mode = os.environ.get("WANDB_MODE") or "offline"
    run = wandb.init(project=project, mode=mode, job_type="report", name="report")
    try:
        run.log({"summary": wandb.Table(dataframe=df.drop(columns=["path"], errors="ignore"))})
        for name, path in paths.items():
            if path.suffix == ".png":
                run.log({f"plots/{name}": wandb.Image(str(path))})
    finally:
        run.finish()
