"""The machine a job measures on: its identity (what a timing depends on) and how busy it was.

Everything here works without importing torch, so a job whose record already exists is found in
well under the two seconds an `import torch` alone can take: the torch and CUDA versions are read
from the installed package's metadata, the GPU model from `nvidia-smi`.

The machine slug names results folders (`results/runs/<machine>/records`):
`cuda-<gpu model>` (e.g. `cuda-nvidia-h200`) or `cpu-<cpu model>-<N>c-<T>t` (usable cores, torch
threads), lower-case, `[a-z0-9-]`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

BUSY_SHARE = 0.25  # other processes using more than this share of all cores: a busy machine


def slugify(text: str) -> str:
    """Lower-case `[a-z0-9-]`, trademarks and runs of other characters removed."""
    text = re.sub(r"\((r|tm|c)\)", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def usable_cores() -> int:
    """Logical CPUs this process may run on (its affinity mask, e.g. a container's limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@cache
def _cpuinfo() -> list[dict[str, str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    blocks = []
    for chunk in text.strip().split("\n\n"):
        entry = {}
        for line in chunk.splitlines():
            key, _, value = line.partition(":")
            entry[key.strip()] = value.strip()
        blocks.append(entry)
    return blocks


def cpu_model() -> str:
    for entry in _cpuinfo():
        if entry.get("model name"):
            return entry["model name"]
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> int:
    """Physical cores among the usable CPUs (hyper-threads of one core count once)."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:
        return usable_cores()
    cores = {
        (e.get("physical id"), e.get("core id"))
        for e in _cpuinfo()
        if e.get("processor", "").isdigit() and int(e["processor"]) in allowed
    }
    return max(1, min(len(cores), len(allowed))) if cores else usable_cores()


def cpu_threads(requested: int | None = None) -> int:
    """The torch thread count a job runs with: `threads=` if set, else `OMP_NUM_THREADS` /
    `MKL_NUM_THREADS` (as torch reads them), else one per usable physical core.

    The job sets exactly this count (`torch.set_num_threads`), so the identity computed here
    without torch is the one the measurement ran with.
    """
    if requested:
        return int(requested)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return physical_cores()


def torch_versions() -> dict[str, str | None]:
    """torch and its CUDA build version, read without importing torch."""
    try:
        version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return {"torch": None, "cuda": None}
    cuda = None
    spec = importlib.util.find_spec("torch")
    if spec is not None and spec.origin:
        version_py = Path(spec.origin).parent / "version.py"
        try:
            pattern = r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]"
            found = re.search(pattern, version_py.read_text(), re.M)
            cuda = found.group(1) if found else None
        except OSError:
            cuda = None
    return {"torch": version, "cuda": cuda}


@cache
def gpu_models() -> tuple[str, ...]:
    """GPU model names as `nvidia-smi` lists them (empty without an NVIDIA driver)."""
    if shutil.which("nvidia-smi") is None:
        return ()
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines() if line.strip())


def device_type(requested: str | None) -> str:
    """`cpu` or `cuda` for a `device=` value (`auto`: CUDA when torch has it and a GPU is there)."""
    value = "auto" if requested in (None, "auto") else str(requested)
    if value == "auto":
        if torch_versions()["cuda"] is None or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
            return "cpu"
        return "cuda" if gpu_models() else "cpu"
    return "cuda" if value.startswith("cuda") else value.split(":")[0]


def gpu_model(requested: str | None) -> str:
    """The model of the GPU a `device=` value selects (torch is asked only when the machine's
    GPUs differ, since `nvidia-smi` and CUDA may number them differently)."""
    models = gpu_models()
    if models and len(set(models)) == 1:
        return models[0]
    import torch

    value = "cuda" if requested in (None, "auto") else str(requested)
    return torch.cuda.get_device_name(torch.device(value))


def machine_slug(device: str | None = "auto", threads: int | None = None) -> str:
    """`cuda-<gpu model>` or `cpu-<cpu model>-<N>c-<T>t` for a job's `device=` and `threads=`."""
    if device_type(device) == "cuda":
        return "cuda-" + slugify(gpu_model(device))
    return f"cpu-{slugify(cpu_model())}-{usable_cores()}c-{cpu_threads(threads)}t"


def register_resolver() -> None:
    """`${machine:${device},${threads}}` in configs: this machine's slug (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("machine"):
        OmegaConf.register_new_resolver("machine", machine_slug)


def machine_identity(device: str | None = "auto", threads: int | None = None) -> dict[str, Any]:
    """What a measurement depends on besides the config: device model, CPU, cores, threads,
    torch and CUDA versions."""
    kind = device_type(device)
    return {
        "machine": machine_slug(device, threads),
        "device_type": kind,
        "gpu": gpu_model(device) if kind == "cuda" else None,
        "cpu": cpu_model(),
        "cpu_cores": usable_cores(),
        "torch_threads": cpu_threads(threads),
        **torch_versions(),
    }


def package_version() -> str:
    try:
        return importlib.metadata.version("avggt_bench")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# --- how busy the machine was -------------------------------------------------------------------


def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    values = [int(v) for v in first[1:9]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def _own_jiffies() -> float:
    t = os.times()
    return (t.user + t.system) * os.sysconf("SC_CLK_TCK")


@dataclass
class LoadMeter:
    """CPU use by other processes over one or more measured regions (`with meter.measure():`).

    `other_cpu_share` is the share of all cores' time that other processes used while this job
    was timing: the machine's busy time from /proc/stat minus this process's own CPU time.
    """

    loadavg_before: list[float] | None = None
    other: float = 0.0
    total: float = 0.0
    regions: int = field(default=0)

    @contextmanager
    def measure(self) -> Iterator[LoadMeter]:
        if self.loadavg_before is None:
            try:
                self.loadavg_before = [round(v, 2) for v in os.getloadavg()]
            except OSError:
                self.loadavg_before = []
        start, own = _cpu_jiffies(), _own_jiffies()
        try:
            yield self
        finally:
            end = _cpu_jiffies()
            if start is not None and end is not None:
                busy = end[0] - start[0] - (_own_jiffies() - own)
                self.other += max(0.0, busy)
                self.total += end[1] - start[1]
            self.regions += 1

    def as_dict(self) -> dict[str, Any]:
        share = self.other / self.total if self.total > 0 else None
        return {
            "cores": usable_cores(),
            "loadavg_before": self.loadavg_before,
            "other_cpu_share": None if share is None else round(share, 4),
            "busy": None if share is None else share > BUSY_SHARE,
        }
