"""`attn_lse(q, k, v)`: fused attention that also returns the per-row log-sum-exp (SGA merges the
kept-key attention with its diagonal and mean terms through it).

The private aten ops behind SDPA change signature between PyTorch releases; they stay behind this
one wrapper. Every backend returns `o` `[B, H, T, d]` in the compute dtype and `lse` `[B, H, T]`
in fp32 (fp64 for fp64 inputs): the natural-log log-sum-exp of the *scaled* logits.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from avggt_bench.errors import ConfigError

LseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _cpu_flash(q, k, v):
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[:2]
    return out, lse


def _sdpa_flash(q, k, v):
    res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, False, False)
    return res[0], res[1]


def _sdpa_efficient(q, k, v):
    res = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True)
    return res[0], res[1][..., : q.shape[-2]]  # the lse may be padded along the query axis


def _flash_attn(q, k, v):
    from flash_attn import flash_attn_func  # optional package

    out, lse, _ = flash_attn_func(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), return_attn_probs=True
    )
    return out.transpose(1, 2), lse[..., : q.shape[-2]]


def _math(q, k, v):
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    scores = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse[..., None])
    return (probs.to(v.dtype) @ v), lse


BACKENDS: dict[str, LseFn] = {
    "cpu_flash": _cpu_flash,
    "sdpa_flash": _sdpa_flash,
    "sdpa_efficient": _sdpa_efficient,
    "flash_attn": _flash_attn,
    "math": _math,
}
CUDA_ONLY = ("sdpa_flash", "sdpa_efficient", "flash_attn")


@dataclass(frozen=True)
class BackendEnv:
    """Everything the backend choice depends on, so that the choice is a pure function (the CUDA
    branches are tested without a GPU). `flash_capable`: PyTorch's flash kernels run on this
    device (CUDA compute capability 8.0 or newer); `flash_attn_installed`: the optional
    `flash_attn` package imports."""

    device_type: str
    dtype: torch.dtype
    head_dim: int
    flash_capable: bool = False
    flash_attn_installed: bool = False


HALF = (torch.float16, torch.bfloat16)
# PyTorch's flash kernels: fp16/bf16, head dim a multiple of 8 up to 256 (sdp_utils.cpp checks)
FLASH_MAX_HEAD_DIM = 256


def select_backend(kernel: str, env: BackendEnv) -> str:
    """Resolve `kernel: auto` for an environment; validate an explicit choice against it."""
    if kernel != "auto":
        if kernel not in BACKENDS:
            raise ConfigError(
                f"unknown attention kernel {kernel!r}; valid: auto, {', '.join(BACKENDS)}"
            )
        if kernel in CUDA_ONLY and env.device_type != "cuda":
            raise ConfigError(
                f"attention kernel {kernel!r} runs on CUDA only (this is {env.device_type}); "
                "use kernel=auto, cpu_flash or math"
            )
        if kernel == "flash_attn" and not env.flash_attn_installed:
            raise ConfigError("kernel=flash_attn needs the flash_attn package; use kernel=auto")
        return kernel
    if env.device_type == "cpu":
        return (
            "cpu_flash" if env.dtype in (torch.float32, torch.float64, torch.bfloat16) else "math"
        )
    if env.device_type == "cuda":
        flash_ok = (
            env.dtype in HALF
            and env.flash_capable
            and env.head_dim % 8 == 0
            and env.head_dim <= FLASH_MAX_HEAD_DIM
        )
        if flash_ok:
            return "sdpa_flash"
        if env.dtype in (torch.float32, *HALF) and env.head_dim % 8 == 0:
            return "sdpa_efficient"  # memory-efficient kernel: fp32, or half on pre-Ampere GPUs
        return "math"  # fp64, or a head dim the fused kernels reject
    return "math"


def backend_env(device: torch.device, dtype: torch.dtype, head_dim: int) -> BackendEnv:
    """The environment of tensors on `device` (asks CUDA only for a CUDA device)."""
    capable = installed = False
    if device.type == "cuda":
        capable = torch.cuda.get_device_capability(device)[0] >= 8
        installed = importlib.util.find_spec("flash_attn") is not None
    return BackendEnv(device.type, dtype, head_dim, capable, installed)


def choose_backend(
    kernel: str, device: torch.device, dtype: torch.dtype, head_dim: int = 64
) -> str:
    """Resolve `kernel: auto` for a device, dtype and head dim; an explicit choice is checked by
    name only (configs are validated before the device is known; `attn_lse` checks the rest)."""
    if kernel != "auto":
        return select_backend(kernel, BackendEnv("cuda", dtype, head_dim, True, True))
    return select_backend(kernel, backend_env(device, dtype, head_dim))


def attn_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Attention output, log-sum-exp and the backend that ran (scale 1/sqrt(d), no mask)."""
    backend = select_backend(kernel, backend_env(q.device, q.dtype, q.shape[-1]))
    out, lse = BACKENDS[backend](q, k, v)
    return out, lse, backend


def merge_lse(
    out: torch.Tensor | None,
    lse: torch.Tensor | None,
    part: torch.Tensor,
    part_lse: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention over the union of two key sets from each set's output and log-sum-exp
    (max-subtracted): `out` `[B, H, T, d]` in the accumulation dtype, `lse` `[B, H, T]`. `out`
    None starts the merge with `part`. Updates `out` and `part` in place (both are the caller's
    own temporaries: a kernel's output), so a merge allocates no output-sized buffer."""
    acc = torch.promote_types(part.dtype, torch.float32)
    part, part_lse = part.to(acc), part_lse.to(acc)
    if out is None:
        return part, part_lse
    top = torch.maximum(lse, part_lse)
    a, b = torch.exp(lse - top), torch.exp(part_lse - top)
    total = a + b
    out.mul_((a / total)[..., None]).add_(part.mul_((b / total)[..., None]))
    return out, top + torch.log(total)
