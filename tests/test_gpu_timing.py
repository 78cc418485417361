"""The CUDA branch of the timers and memory meters, run with a fake accelerator: the order of the
device calls (synchronise, reset the peak, read the baseline, ..., synchronise, read the peak) is
what makes a GPU measurement cover the kernels and nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from avggt_bench.timing import (
    CudaAccelerator,
    MemoryMeter,
    accelerator_for,
    time_repeats,
)


@dataclass
class FakeAccelerator:
    """Records every call; memory rises by `step` bytes per `fn` call, the peak is the highest."""

    memory_kind: str = "cuda_max_memory_allocated"
    calls: list[str] = field(default_factory=list)
    allocated: int = 1000
    peak: int = 1000

    def synchronize(self) -> None:
        self.calls.append("sync")

    def reset_peak_memory(self) -> None:
        self.calls.append("reset")
        self.peak = self.allocated

    def memory_allocated(self) -> int:
        self.calls.append("allocated")
        return self.allocated

    def max_memory_allocated(self) -> int:
        self.calls.append("max")
        return self.peak

    def work(self, extra: int) -> None:
        self.calls.append("fn")
        self.peak = max(self.peak, self.allocated + extra)


class FakeClock:
    """Advances by the given steps, one per reading."""

    def __init__(self, steps):
        self.t, self.steps = 0.0, list(steps)

    def __call__(self) -> float:
        self.t += self.steps.pop(0)
        return self.t


def test_time_repeats_on_an_accelerator_syncs_around_every_repeat_and_reads_the_peak():
    accel = FakeAccelerator()
    extras = iter([10**9, 500, 700, 300])  # the warm-up's peak must not count

    def fn():
        accel.work(next(extras))
        return "out"

    clock = FakeClock([0.0, 2.0, 0.0, 3.0, 0.0, 1.0])
    out, stats, mem = time_repeats(
        fn, torch.device("cuda"), warmup=1, repeats=3, accelerator=accel, clock=clock
    )
    assert out == "out"
    assert stats.times_s == [2.0, 3.0, 1.0] and stats.median_s == 2.0 and stats.warmup == 1
    timed = ["sync", "fn", "sync"]
    assert accel.calls == ["fn", "sync", "reset", "allocated", *timed * 3, "sync", "max"]
    assert mem.kind == "cuda_max_memory_allocated"
    assert mem.baseline_bytes == 1000 and mem.peak_bytes == 1700  # the timed region's peak


def test_memory_meter_on_an_accelerator_measures_only_its_region():
    accel = FakeAccelerator()
    accel.work(5000)  # before the region
    with MemoryMeter(torch.device("cuda"), accel) as meter:
        accel.work(200)
    assert accel.calls == ["fn", "sync", "reset", "allocated", "fn", "sync", "max"]
    assert meter.stats.peak_bytes == 1200 and meter.stats.device == "cuda"


def test_the_cpu_branch_touches_no_accelerator():
    assert accelerator_for(torch.device("cpu")) is None
    assert isinstance(accelerator_for(torch.device("cuda")), CudaAccelerator)  # no CUDA call yet
    with MemoryMeter(torch.device("cpu")) as meter:
        torch.ones(1000)
    assert meter.stats.kind.startswith("cpu_peak_rss")


@pytest.mark.gpu
def test_cuda_accelerator_peak_covers_an_allocation():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    dev = torch.device("cuda")
    with MemoryMeter(dev) as meter:
        x = torch.empty(64 << 20, dtype=torch.uint8, device=dev)
        del x
    assert meter.stats.peak_bytes - meter.stats.baseline_bytes >= 64 << 20
