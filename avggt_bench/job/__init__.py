"""One job: a model + attention variant + dataset + view count -> one JSON record.

`run_job(cfg)` checks for a finished record first (without importing torch or the model code),
then runs the job's scenes: one scene for a plain loader, every scene of a protocol preset.
"""

from avggt_bench.job.resume import requested_views
from avggt_bench.job.start import run_job

__all__ = ["requested_views", "run_job"]
