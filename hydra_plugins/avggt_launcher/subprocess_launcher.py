"""`hydra/launcher=subprocess`: run each sweep job in a fresh Python process, one after another.

Peak memory and allocator state are then never inherited from the previous job (a CUDA caching
allocator or a CPU high-water mark would otherwise pollute the next job's numbers), and a crash of
one job (even a hard one: out of memory killer, segfault) cannot take the sweep down. Each job is
`python -m <module> <its overrides> hydra.mode=RUN hydra.run.dir=<sweep dir>/<subdir>`; failures are
the job's own business (it writes a record with a status), the launcher only reports exit codes.
"""

# no `from __future__ import annotations`: Hydra imports plugins without registering the module,
# and string annotations make dataclasses look it up
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


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
            env = {**os.environ, "AVGGT_SWEEP_GROUP": sweep_dir.name}
            code = subprocess.run(cmd, env=env).returncode
            if code != 0:
                log.warning(f"\t#{idx} exited with code {code} (its record says why)")
            ret = JobReturn(
                overrides=list(overrides),
                cfg=sweep_config,
                hydra_cfg=self.config,
                working_dir=str(job_dir),
                task_name=str(sweep_config.hydra.job.name),
                status=JobStatus.COMPLETED,
            )
            ret.return_value = code
            returns.append(ret)
        return returns
