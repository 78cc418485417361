"""Records: one JSON file per job, the truth every report is derived from.

A record holds the resolved config, status and message, every timing repeat, peak memory, the
analytic cost, metrics and provenance (machine, git SHA, torch/CUDA/GPU, dtype, seed, weights, how
busy the machine was). Records are written atomically: a killed job never leaves a file that looks
complete. A job writes a `running` record when it starts and replaces it when it ends; a
`running` record left behind by a dead process becomes `crashed` (the sweep launcher does this).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from avggt_bench.paths import REPO_DIR
from avggt_bench.records.machine import machine_identity, package_version

# 2: a route's layer microbenchmark under `timings.layer_benchmarks[route]` and the per-layer facts
# the report shows under `model.route_layers[i].columns` (1 had method-specific keys; the report's
# ingest converts them)
SCHEMA_VERSION = 2
# partial: a protocol job where some scenes failed and at least one is ok; running: written at
# the start, replaced at the end; crashed: the process died with the record still `running`
STATUSES = ("ok", "partial", "error", "oom", "skipped", "crashed", "running")
FILE_MODE = 0o644  # readable by the group and others, as any result file


def writes_files() -> bool:
    """False on a torchrun rank other than 0: the files of a frame-parallel job (its record's
    cache entries, saved predictions, logger run) are written by rank 0 alone."""
    return os.environ.get("RANK", "0") == "0"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Record:
    """One job's result. `job` holds the few fields that identify the run in tables."""

    run_id: str
    config_hash: str
    job: dict[str, Any]
    config: dict[str, Any]
    status: str = "error"
    message: str | None = None
    stage: str | None = None  # the stage that was running when the job failed
    series_hash: str | None = None  # the config hash without the view count (OOM skips)
    started_at: str = field(default_factory=now_iso)
    finished_at: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    scenes: list[dict[str, Any]] = field(default_factory=list)  # protocol runs: one row per scene
    provenance: dict[str, Any] = field(default_factory=dict)
    # frame-parallel jobs (parallel=frames): world size, per-rank memory and bytes per layer
    parallel: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_hash(identity: dict[str, Any]) -> str:
    """Stable SHA-256 of the job-defining config (sorted JSON)."""
    blob = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if type(value).__module__ == "torch" and type(value).__name__ in ("dtype", "device"):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_record(record: Record, path: Path) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename over `path`.

    The file gets mode 0644 (mkstemp creates 0600, awkward on a shared cluster).
    """
    return write_json(record.as_dict(), path)


def write_json(content: dict[str, Any], path: Path) -> Path:
    """`write_record` for a plain dict (the launcher rewrites records it did not create)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(content, indent=1, default=_json_default, allow_nan=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return json.load(f)


def matching_records(folder: Path, **match: Any) -> list[dict[str, Any]]:
    """Readable records in `folder` whose top-level fields equal `match` (unreadable ones skip)."""
    found = []
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json")):
        try:
            rec = read_record(path)
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and all(rec.get(k) == v for k, v in match.items()):
            found.append(rec)
    return found


def git_state(repo: Path = REPO_DIR) -> dict[str, Any]:
    """SHA and dirty flag of the code that ran (None outside a git checkout). Changes under
    `results/` do not make the code dirty: a sweep that writes the reference records would
    otherwise mark its own later jobs as run on modified code."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    return {"git_sha": sha, "git_dirty": bool(status) if status is not None else None}


def device_description(device: Any) -> dict[str, Any]:
    """Human-readable device name plus the facts that change timings (torch imported here)."""
    import torch

    info: dict[str, Any] = {
        "device_type": device.type,
        "cpu": machine_identity("cpu")["cpu"],
        "cpu_cores": machine_identity("cpu")["cpu_cores"],
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            device_name=props.name,
            gpu=props.name,
            gpu_memory_gb=round(props.total_memory / 1e9, 1),
            compute_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
        )
    else:
        info["device_name"] = f"CPU ({info['cpu']}, {info['torch_threads']} threads)"
    return info


def provenance(device: Any, machine: str) -> dict[str, Any]:
    """Where and with what a job ran; `machine` is its slug (see `avggt_bench.records.machine`)."""
    import torch

    from avggt_bench.metrics.version import metrics_code_version

    return {
        "machine": machine,
        "package_version": package_version(),
        "metrics_code": metrics_code_version(),
        **git_state(),
        **device_description(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
    }
