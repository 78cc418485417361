"""`attn_lse(q, k, v)`: fused attention that also returns the per-row log-sum-exp (avggt.md §7.2).

The private aten ops behind SDPA change signature between PyTorch releases; they stay behind this
one wrapper. Every backend returns `o` `[B, H, T, d]` in the compute dtype and `lse` `[B, H, T]`
in fp32 (fp64 for fp64 inputs): the natural-log log-sum-exp of the *scaled* logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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


def choose_backend(kernel: str, device: torch.device, dtype: torch.dtype) -> str:
    """Resolve `kernel: auto` for a device and dtype; validate an explicit choice."""
    if kernel != "auto":
        if kernel not in BACKENDS:
            raise ConfigError(
                f"unknown attention kernel {kernel!r}; valid: auto, {', '.join(BACKENDS)}"
            )
        return kernel
    if device.type == "cpu":
        return "cpu_flash" if dtype in (torch.float32, torch.float64, torch.bfloat16) else "math"
    if device.type == "cuda":
        return "sdpa_flash" if dtype in (torch.float16, torch.bfloat16) else "sdpa_efficient"
    return "math"


def attn_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Attention output, log-sum-exp and the backend that ran (scale 1/sqrt(d), no mask)."""
    backend = choose_backend(kernel, q.device, q.dtype)
    out, lse = BACKENDS[backend](q, k, v)
    return out, lse, backend
