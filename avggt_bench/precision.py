"""Device and precision policy of a job: which device, which weight dtype, which autocast, and
whether the prediction heads run inside that autocast.

Policies (the `precision` key):

- `fp32`: no autocast; `bf16` / `fp16`: autocast around the network, heads in fp32 (autocast off,
  as the official VGGT `VGGT.forward` and π³ `Pi3.forward` do around their heads);
- `bf16_weights`: VGGT* with weights, tokens and stored layers in bf16 and no autocast;
- `bf16_weights_autocast`: FastVGGT's release — bf16 weights *and* bf16 autocast, heads included
  (mystorm16/FastVGGT `vggt/utils/eval_utils.py::infer_vggt_and_reconstruct` wraps the whole
  model in `torch.cuda.amp.autocast(dtype=bfloat16)`, and its `vggt/models/vggt.py::VGGT.forward`
  does not turn autocast off around the heads).

`precision=auto` is bf16 autocast on CUDA and fp32 on CPU, unless the attention config names a
`precision_policy` (the FastVGGT presets do): then that policy on CUDA. On CPU `auto` stays fp32
for every preset — the releases are timed on CUDA only, and CPU results compare fp32 runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch

from avggt_bench.errors import ConfigError


@dataclass(frozen=True)
class PrecisionPolicy:
    """Weight dtype (None: keep fp32), autocast dtype (None: no autocast), heads in autocast."""

    weights: torch.dtype | None
    autocast: torch.dtype | None
    heads_in_autocast: bool = False


POLICIES: dict[str, PrecisionPolicy] = {
    "fp32": PrecisionPolicy(None, None),
    "bf16": PrecisionPolicy(None, torch.bfloat16),
    "fp16": PrecisionPolicy(None, torch.float16),
    "bf16_weights": PrecisionPolicy(torch.bfloat16, None),
    "bf16_weights_autocast": PrecisionPolicy(torch.bfloat16, torch.bfloat16, True),
}
# autocast-only policies by name (kept for callers that look a compute dtype up)
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# policies that cast the weights (the job casts the model and its input to this dtype)
WEIGHT_PRECISIONS = {name: p.weights for name, p in POLICIES.items() if p.weights is not None}

# Set while a policy that runs the heads inside the trunk's autocast is active (see heads_context);
# a ContextVar, so it is scoped to the `with autocast_context(...)` block and to its thread.
_HEADS_IN_AUTOCAST: ContextVar[bool] = ContextVar("heads_in_autocast", default=False)


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


def _check_policy(value: str, where: str) -> str:
    if value not in POLICIES:
        raise ConfigError(f"{where}={value!r} is not valid; use auto, {', '.join(POLICIES)}")
    return value


def resolve_precision(
    value: str | None, device: torch.device, attention: Mapping[str, Any] | None = None
) -> str:
    """The precision policy name of a job (`auto` resolved for the device and the attention
    config's `precision_policy`, if it has one)."""
    value = "auto" if value in (None, "auto") else str(value)
    if value != "auto":
        return _check_policy(value, "precision")
    preset = attention.get("precision_policy") if attention is not None else None
    if preset is not None:
        _check_policy(str(preset), "attention.precision_policy")
    if device.type != "cuda":
        return "fp32"
    return str(preset) if preset is not None else "bf16"


@contextmanager
def _autocast(policy: PrecisionPolicy, device: torch.device) -> Iterator[None]:
    token = _HEADS_IN_AUTOCAST.set(policy.heads_in_autocast)
    try:
        with torch.autocast(device.type, dtype=policy.autocast):
            yield
    finally:
        _HEADS_IN_AUTOCAST.reset(token)


def autocast_context(precision: str, device: torch.device) -> AbstractContextManager:
    """The autocast of a policy around the network (none for fp32 and bf16_weights); the heads
    follow `heads_context` inside it."""
    policy = POLICIES[_check_policy(precision, "precision")]
    if policy.autocast is None:
        return nullcontext()
    return _autocast(policy, device)


def heads_context(device: torch.device) -> AbstractContextManager:
    """What a model's prediction heads run under: autocast off (fp32 heads, as the official VGGT
    and π³ forward passes do), unless the active policy keeps them in the trunk's autocast."""
    if _HEADS_IN_AUTOCAST.get():
        return nullcontext()
    return torch.autocast(device.type, enabled=False)
