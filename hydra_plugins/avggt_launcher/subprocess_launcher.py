"""`hydra/launcher=subprocess`: run each sweep job in a fresh Python process, one after another.

Peak memory and allocator state are then never inherited from the previous job (a CUDA caching
allocator or a CPU high-water mark would otherwise pollute the next job's numbers), and a crash of
one job (even a hard one: out of memory killer, segfault) cannot take the sweep down. Each job is
`python -m <module> <its overrides> hydra.mode=RUN hydra.run.dir=<sweep dir>/<subdir>`.

A job that finishes writes its own record, whatever its status (ok, error, oom, ...): that job is
reported to Hydra as completed. A job whose process died (signal, segfault, out-of-memory killer)
leaves its `running` record, or none: the launcher turns it into a `crashed` record with the exit
code and the tail of the job's stderr, reports the job as failed, and the sweep exits non-zero
once every job has run.
"""

# no `from __future__ import annotations`: Hydra imports plugins without registering the module,
# and string annotations make dataclasses look it up
import json
import logging
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)
STDERR_TAIL_LINES = 40
MARKER_ENV = "AVGGT_RECORD_MARKER"  # the job writes its record's path there (avggt_bench.job)


class JobCrashed(RuntimeError):
    """A sweep job died without finishing its record."""


@dataclass
class SubprocessLauncherConf:
    _target_: str = "hydra_plugins.avggt_launcher.subprocess_launcher.SubprocessLauncher"
    module: str = "avggt_bench.run"  # the Hydra app each job runs
    python: str | None = None  # interpreter; None = the one running the sweep


ConfigStore.instance().store(
    group="hydra/launcher", name="subprocess", node=SubprocessLauncherConf, provider="avggt_bench"
)


class SubprocessLauncher(Launcher):
    def __init__(self, module: str = "avggt_bench.run", python: str | None = None) -> None:
        self.module = module
        self.python = python or sys.executable
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs, each in its own process")
        returns = []
        for offset, overrides in enumerate(job_overrides):
            idx = initial_job_idx + offset
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            sweep_config = self.hydra_context.config_loader.load_sweep_config(
                self.config, list(overrides)
            )
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = idx
                sweep_config.hydra.job.num = idx
            job_dir = sweep_dir / str(sweep_config.hydra.sweep.subdir)
            cmd = [
                self.python,
                "-m",
                self.module,
                *overrides,
                "hydra.mode=RUN",
                f"hydra.run.dir={job_dir}",
            ]
            marker = job_dir / ".record_path"
            marker.unlink(missing_ok=True)
            env = {**os.environ, "AVGGT_SWEEP_GROUP": sweep_dir.name, MARKER_ENV: str(marker)}
            code, tail = run_teeing_stderr(cmd, env)
            crash = None if code == 0 else crashed_record(marker, code, tail)
            if crash is not None:
                log.error(f"\t#{idx} crashed (exit code {code}): {crash}")
            elif code != 0:
                log.warning(f"\t#{idx} exited with code {code} (its record says why)")
            ret = JobReturn(
                overrides=list(overrides),
                cfg=sweep_config,
                hydra_cfg=self.config,
                working_dir=str(job_dir),
                task_name=str(sweep_config.hydra.job.name),
                status=JobStatus.FAILED if crash else JobStatus.COMPLETED,
            )
            if crash:
                ret._return_value = JobCrashed(
                    f"job #{idx} ({' '.join(filter_overrides(overrides))}) crashed with exit "
                    f"code {code}: {crash}"
                )
                returns.append(ret)
                continue
            ret.return_value = code
            returns.append(ret)
        return returns


def run_teeing_stderr(cmd: list[str], env: dict[str, str]) -> tuple[int, list[str]]:
    """Run `cmd`, passing its stderr through while keeping the last lines (for a crash record)."""
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True, errors="replace")

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reaches the job too; let it write its record
        code = proc.wait()
        reader.join(timeout=5)
        raise
    reader.join(timeout=5)
    return code, list(tail)


def crashed_record(marker: Path, code: int, tail: list[str]) -> str | None:
    """After a non-zero exit: turn the job's leftover `running` record into `crashed` (exit code,
    stderr tail); returns what happened, or None when the job finished its record itself."""
    from avggt_bench.records import now_iso, write_json

    text = "\n".join(tail)
    try:
        path = Path(marker.read_text().strip())
    except OSError:
        return f"died before naming its record; stderr tail:\n{text}"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = None
    if record is not None and record.get("status") != "running":
        return None  # a finished record (error, oom, ...): the job's own account
    if record is None:
        return f"died before writing its record {path}; stderr tail:\n{text}"
    signal = f" (signal {-code})" if code < 0 else ""
    record.update(
        status="crashed",
        message=f"process died with exit code {code}{signal}; stderr tail:\n{text}",
        exit_code=code,
        stderr_tail=tail,
        finished_at=now_iso(),
    )
    write_json(record, path)
    return f"record {path} marked crashed"
