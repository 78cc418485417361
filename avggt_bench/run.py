"""The Hydra job: one model + attention variant + dataset + view count -> one JSON record.

    python -m avggt_bench.run model=vggt_small attention=dense dataset=synthetic num_views=16
    python -m avggt_bench.run -m num_views=8,16 attention=dense,avggt_9

Records go to `results/runs/<machine>/records/` (git-ignored) unless `record.dir=` says otherwise,
so running the same command twice recomputes nothing. Failures inside the job (bad data, out of
memory) become a record with a status and a message; the process exits non-zero for a single
failed run, while a multirun sweep goes on. The job itself lives in `avggt_bench.job`.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from omegaconf import DictConfig

from avggt_bench.job import requested_views, run_job
from avggt_bench.job.start import MARKER_ENV
from avggt_bench.paths import config_dir
from avggt_bench.records.machine import register_resolver
from avggt_bench.typos import unknown_override_hint

__all__ = ["main", "requested_views", "run_job"]
log = logging.getLogger("avggt_bench.run")


register_resolver()  # `${machine:...}` in the configs


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
    if record.status not in ("ok", "partial") and not _is_multirun():
        raise SystemExit(1)
    return record.status


def main(argv: list[str] | None = None) -> None:
    """Entry point: a clear error for a mistyped key, one line for Ctrl-C."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    hint = unknown_override_hint(sys.argv[1:], config_dir())
    if hint:
        print(f"error: {hint}", file=sys.stderr)
        raise SystemExit(2)
    try:
        _hydra_main()
    except KeyboardInterrupt:
        if os.environ.get(MARKER_ENV):  # a sweep job: the launcher's process says it once
            raise SystemExit(130) from None
        print(
            "\ninterrupted: finished jobs keep their records (nothing finished is lost); the "
            "interrupted job is not recorded as done. Run the same command again to resume.",
            file=sys.stderr,
        )
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
