"""Frame-sharded inference on torch.distributed: each rank owns a contiguous block of frames.

`shard.py` splits the frames and holds the process-wide context (none: single process, the
default); `comm.py` the collectives that count their bytes; `outputs.py` gathers the per-frame
outputs; `launch.py` starts the process group (torchrun or spawned test workers); `cost.py`
predicts the bytes per layer and the per-GPU memory. How each global layer talks across ranks is
its route's `run_sharded` (`avggt_bench.attention.routes`).
"""

from avggt_bench.parallel.comm import CommLog
from avggt_bench.parallel.shard import (
    FrameParallel,
    FrameSplit,
    Shard,
    current,
    frame_parallel,
    shard_for,
    split_frames,
)

__all__ = [
    "CommLog",
    "FrameParallel",
    "FrameSplit",
    "Shard",
    "current",
    "frame_parallel",
    "shard_for",
    "split_frames",
]
