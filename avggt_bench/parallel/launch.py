"""Starting the process group: from torchrun's environment (the job), or spawned workers (tests).

NCCL when the job runs on CUDA (one GPU per rank, `LOCAL_RANK`), gloo on CPU.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from avggt_bench.errors import ConfigError
from avggt_bench.parallel.shard import FrameParallel


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_from_env(device: torch.device) -> FrameParallel:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, MASTER_ADDR/PORT in the
    environment); a CUDA device becomes this rank's `cuda:LOCAL_RANK`."""
    if not launched_by_torchrun():
        raise ConfigError(
            "parallel=frames needs the processes torchrun starts: run "
            "`torchrun --nproc-per-node=N -m avggt_bench.run parallel=frames ...`"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return FrameParallel(dist.get_world_size(), dist.get_rank())


PARALLEL_MODES = ("none", "frames")


def start_parallel(cfg: Any, device: torch.device) -> FrameParallel | None:
    """The job's `parallel` setting: `none` (default) or `frames` (join torchrun's group)."""
    mode = str(cfg.get("parallel", "none") or "none")
    if mode not in PARALLEL_MODES:
        raise ConfigError(f"parallel={mode!r}; valid: {', '.join(PARALLEL_MODES)}")
    return init_from_env(device) if mode == "frames" else None


def local_device(device: torch.device) -> torch.device:
    """This rank's device: `cuda:LOCAL_RANK` for CUDA, the device itself otherwise."""
    if device.type == "cuda" and launched_by_torchrun():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _worker(rank: int, world: int, store: str, fn: Callable, args: tuple, threads: int) -> None:
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        fn(FrameParallel(world, rank), *args)
    finally:
        dist.destroy_process_group()


def spawn_gloo(fn: Callable[..., Any], world: int, *args: Any, threads: int = 1) -> None:
    """Run `fn(FrameParallel, *args)` in `world` spawned CPU processes joined by gloo (tests and
    examples without torchrun); `fn` must be importable (module level). Raises if any rank does."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "store")
        mp.spawn(_worker, args=(world, store, fn, args, threads), nprocs=world, join=True)
