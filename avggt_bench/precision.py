"""Device and precision policy of a job: which device, which dtype, which autocast.

`precision=auto` is bf16 autocast on CUDA and fp32 on CPU; `bf16_weights` is VGGT* as FastVGGT's
release runs it (weights, tokens and stored layers in bf16, no autocast).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from avggt_bench.errors import ConfigError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# VGGT* as FastVGGT runs it: weights, tokens and stored layers in bf16, no autocast
WEIGHT_PRECISIONS = {"bf16_weights": torch.bfloat16}


def resolve_device(value: str | None) -> torch.device:
    """`auto`/None -> CUDA when available, else CPU; anything else must be a usable device."""
    value = "auto" if value in (None, "auto") else str(value)
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except RuntimeError as exc:
        raise ConfigError(
            f"device={value!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={value!r} but CUDA is not available here; use device=cpu or auto"
        )
    return device


def resolve_precision(value: str | None, device: torch.device) -> str:
    """The precision policy name of a job (`auto` resolved for the device)."""
    value = "auto" if value in (None, "auto") else str(value)
    if value == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if value not in PRECISIONS and value not in WEIGHT_PRECISIONS:
        valid = ", ".join([*PRECISIONS, *WEIGHT_PRECISIONS])
        raise ConfigError(f"precision={value!r} is not valid; use auto, {valid}")
    return value


def autocast_context(precision: str, device: torch.device) -> AbstractContextManager:
    """bf16/fp16 autocast around the network (the heads disable it themselves); fp32 and the
    bf16-weights policy: none."""
    if precision == "fp32" or precision in WEIGHT_PRECISIONS:
        return nullcontext()
    return torch.autocast(device.type, dtype=PRECISIONS[precision])
