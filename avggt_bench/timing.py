"""Device timers and peak memory: warm-up, synchronised repeats, median and spread.

GPU: `torch.cuda.synchronize` around `perf_counter`, peak from `max_memory_allocated` after
`reset_peak_memory_stats`. CPU: `perf_counter`, peak resident set size read from the kernel's
high-water mark (reset before the measured region where Linux allows it), thread count recorded.

Every CUDA call goes through one small interface, `Accelerator` (`CudaAccelerator` on a GPU), so
the GPU branch of the meters runs in tests with a fake one (tests/test_gpu_rehearsal.py).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, TypeVar

import torch

T = TypeVar("T")
Clock = Callable[[], float]


class Accelerator(Protocol):
    """The device calls the meters make on an accelerator (CUDA)."""

    memory_kind: str  # what `max_memory_allocated` measures, for the record

    def synchronize(self) -> None: ...
    def reset_peak_memory(self) -> None: ...
    def memory_allocated(self) -> int: ...
    def max_memory_allocated(self) -> int: ...


@dataclass(frozen=True)
class CudaAccelerator:
    """PyTorch's CUDA caching allocator statistics and stream synchronisation for one device."""

    device: torch.device
    memory_kind: str = "cuda_max_memory_allocated"

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def reset_peak_memory(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)

    def memory_allocated(self) -> int:
        return int(torch.cuda.memory_allocated(self.device))

    def max_memory_allocated(self) -> int:
        return int(torch.cuda.max_memory_allocated(self.device))


def accelerator_for(device: torch.device) -> Accelerator | None:
    """The accelerator interface of a device: CUDA's for `cuda`, None (host memory) otherwise."""
    return CudaAccelerator(device) if device.type == "cuda" else None


def synchronize(device: torch.device) -> None:
    accel = accelerator_for(device)
    if accel is not None:
        accel.synchronize()


@dataclass
class TimingStats:
    """Every repeat (seconds) and their summary; `spread_s` is the interquartile range."""

    times_s: list[float]
    warmup: int
    median_s: float = 0.0
    mean_s: float = 0.0
    min_s: float = 0.0
    max_s: float = 0.0
    spread_s: float = 0.0

    def __post_init__(self) -> None:
        if self.times_s:
            t = sorted(self.times_s)
            self.median_s = statistics.median(t)
            self.mean_s = statistics.fmean(t)
            self.min_s, self.max_s = t[0], t[-1]
            if len(t) >= 4:
                q = statistics.quantiles(t, n=4)
                self.spread_s = q[2] - q[0]
            else:
                self.spread_s = t[-1] - t[0]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MemoryStats:
    """Peak memory of a measured region. `kind` says what was measured."""

    kind: str
    peak_bytes: int
    baseline_bytes: int
    device: str
    threads: int = field(default_factory=torch.get_num_threads)

    @property
    def peak_gb(self) -> float:
        return self.peak_bytes / 1e9

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "peak_gb": self.peak_gb}


def _proc_status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def current_rss_bytes() -> int:
    kb = _proc_status_kb("VmRSS")
    if kb is not None:
        return kb * 1024
    return _lifetime_peak_rss_bytes()


def _lifetime_peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class MemoryMeter:
    """Measures peak memory over a region: `with MemoryMeter(device) as m: ...; m.stats`.

    `accelerator` replaces the device's own interface (tests pass a fake CUDA one)."""

    def __init__(self, device: torch.device, accelerator: Accelerator | None = None) -> None:
        self.device = device
        self.accel = accelerator if accelerator is not None else accelerator_for(device)
        self.stats: MemoryStats | None = None

    def __enter__(self) -> MemoryMeter:
        if self.accel is not None:
            self.accel.synchronize()  # work queued before the region must not count in it
            self.accel.reset_peak_memory()
            self._baseline = self.accel.memory_allocated()
            self._kind = self.accel.memory_kind
        else:
            self._baseline = current_rss_bytes()
            reset = _reset_peak_rss()
            self._kind = "cpu_peak_rss" if reset else "cpu_peak_rss_process_lifetime"
        return self

    def __exit__(self, *exc) -> None:
        if self.accel is not None:
            self.accel.synchronize()  # the region's kernels must have run before the peak is read
            peak = self.accel.max_memory_allocated()
        else:
            kb = _proc_status_kb("VmHWM")
            peak = kb * 1024 if kb is not None else _lifetime_peak_rss_bytes()
        self.stats = MemoryStats(self._kind, int(peak), int(self._baseline), str(self.device))


@contextmanager
def stopwatch(device: torch.device | None = None) -> Iterator[dict[str, float]]:
    """Wall time of a block (synchronised on CUDA): `with stopwatch(dev) as t: ...; t["s"]`."""
    box = {"s": float("nan")}
    if device is not None:
        synchronize(device)
    start = time.perf_counter()
    try:
        yield box
    finally:
        if device is not None:
            synchronize(device)
        box["s"] = time.perf_counter() - start


def random_qkv(
    tokens: int, heads: int, head_dim: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seeded random q, k, v `[1, heads, tokens, head_dim]`: the inputs of a layer
    microbenchmark (every route times the same tensors)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    shape = (1, heads, tokens, head_dim)
    q, k, v = (torch.randn(shape, generator=gen).to(device=device, dtype=dtype) for _ in range(3))
    return q, k, v


def time_repeats(
    fn: Callable[[], T],
    device: torch.device,
    warmup: int = 1,
    repeats: int = 3,
    accelerator: Accelerator | None = None,
    clock: Clock = time.perf_counter,
) -> tuple[T, TimingStats, MemoryStats]:
    """Run `fn` `warmup` times untimed, then `repeats` times timed; peak memory over the repeats.

    On an accelerator every repeat is bracketed by synchronisations, so the wall clock covers the
    kernels and not only their launch. Returns the last result, the timings and the memory of the
    timed region. `accelerator` and `clock` replace the device's own (tests).
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    accel = accelerator if accelerator is not None else accelerator_for(device)
    sync = accel.synchronize if accel is not None else (lambda: None)
    for _ in range(warmup):
        fn()
    result = None
    times = []
    with MemoryMeter(device, accel) as meter:
        for _ in range(repeats):
            result = None  # free the previous output so the peak covers one run only
            sync()
            start = clock()
            result = fn()
            sync()
            times.append(clock() - start)
    return result, TimingStats(times, warmup), meter.stats


def cpu_description() -> dict[str, Any]:
    """CPU model, logical cores available to this process and the torch thread count."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    return {"cpu": model, "cpu_cores": cores, "torch_threads": torch.get_num_threads()}
