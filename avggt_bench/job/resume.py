"""What identifies a job, where its record goes, and whether it already ran (no torch import).

The resume identity is everything that changes a measurement: the resolved config (without where
results go and how they are logged), the machine (device model, CPU model, cores, threads), the
torch and CUDA versions and the package version. The git SHA is recorded but not hashed: a commit
that does not touch the measured code should not invalidate every record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from avggt_bench.errors import ConfigError
from avggt_bench.records import config_hash, matching_records, read_record
from avggt_bench.records.machine import machine_identity, package_version, register_resolver

PLAIN_LOADER_VIEWS = 16  # num_views=null on a plain loader (synthetic)
# where results go and what is kept besides the record, not what ran
NOT_IDENTITY = ("record", "resume", "logger", "paths", "hydra", "predictions")
FINISHED = ("ok", "partial")  # statuses a rerun does not recompute


def requested_views(cfg: DictConfig) -> int | None:
    """The job's view count: an int, or None for a protocol preset's own frame selection.

    `num_views: null` (or `protocol`) means the dataset's own count: the preset's sampling for a
    protocol preset, every image (up to `dataset.max_views`) for the folder loader, 16 views for
    the synthetic loader.
    """
    value = cfg.get("num_views")
    if value in (None, "protocol", "null"):
        own_count = "task" in cfg.dataset or cfg.dataset.get("dataset") == "folder"
        return None if own_count else PLAIN_LOADER_VIEWS
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


@dataclass
class JobId:
    """A job's identity, hashes, display fields and record path."""

    identity: dict[str, Any]
    digest: str
    series: str
    job: dict[str, Any]
    run_id: str
    path: Path

    @property
    def views(self) -> int | None:
        return self.identity["config"]["num_views"]


def job_id(cfg: DictConfig, overrides: list[str] | None = None) -> JobId:
    """Identity, config hash, series hash (without the view count) and record path of a job."""
    register_resolver()
    # key by key: `record.dir` may name Hydra's output folder, unknown outside a Hydra app
    config = {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for k, v in ((k, cfg[k]) for k in cfg if k not in NOT_IDENTITY)
    }
    views = requested_views(cfg)
    config["num_views"] = views
    machine = machine_identity(cfg.get("device"), cfg.get("threads"))
    identity = {"config": config, "machine": machine, "package_version": package_version()}
    digest = config_hash(identity)
    series = config_hash({**identity, "config": {**config, "num_views": None}})
    job = {
        "model": cfg.model.name,
        "attention": cfg.attention.get("name", "custom"),
        "dataset": cfg.dataset.name,
        "num_views": views,
        "device": machine["machine"],
        "machine": machine["machine"],
        "precision": str(cfg.get("precision", "auto")),
        "tag": cfg.record.get("tag"),
        "overrides": list(overrides or []),
    }
    shown = views if views is not None else "all" if "task" not in cfg.dataset else "protocol"
    run_id = f"{job['model']}-{job['attention']}-{job['dataset']}-v{shown}-{digest[:10]}"
    return JobId(identity, digest, series, job, run_id, Path(cfg.record.dir) / f"{run_id}.json")


def existing_record(jid: JobId, want_predictions: bool = False) -> dict[str, Any] | None:
    """The finished record of this exact job, if one is on disk (and, with `want_predictions`,
    only if its predictions were saved: `predictions.save=true` reruns a job that kept none)."""
    try:
        rec = read_record(jid.path)
    except (OSError, ValueError):
        return None
    if rec.get("status") not in FINISHED or rec.get("config_hash") != jid.digest:
        return None
    if want_predictions and not has_saved_predictions(jid.path):
        return None
    return rec


def has_saved_predictions(record_path: Path) -> bool:
    """Whether the record's `<run_id>.predictions` folder holds a saved scene (the format is
    `avggt_bench.records.saved_predictions`; only names are checked here, without torch)."""
    folder = record_path.with_name(record_path.stem + ".predictions")
    return folder.is_dir() and any(not p.name.startswith(".") for p in folder.glob("*.npz"))


def oom_below(jid: JobId) -> int | None:
    """The smallest view count of the same configuration that ran out of memory, if <= ours."""
    views = jid.views
    if views is None:
        return None
    sizes = [
        r["job"]["num_views"]
        for r in matching_records(jid.path.parent, series_hash=jid.series, status="oom")
        if (r.get("job", {}).get("num_views") or views + 1) <= views
    ]
    return min(sizes) if sizes else None
