"""Dense attention kernels and the backend policies of the official models.

VGGT calls SDPA with PyTorch's default backend choice; π³ restricts it (flash only for bf16, else
math or memory-efficient). Matching the policy is what makes outputs bit-identical to the official
models on CPU (facebookresearch/vggt `vggt/layers/attention.py::Attention`; yyfz/Pi3
`pi3/models/layers/attention.py::FlashAttentionRope`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from avggt_bench.errors import ConfigError

SDPA_POLICIES = ("default", "pi3")


def sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, policy: str = "default"
) -> torch.Tensor:
    """Scaled dot-product attention `[batch, heads, n, d]` with an official backend policy."""
    if policy == "default":
        return F.scaled_dot_product_attention(q, k, v)
    if policy == "pi3":
        if q.dtype == torch.bfloat16:
            backends = [SDPBackend.FLASH_ATTENTION]
        else:
            backends = [SDPBackend.MATH, SDPBackend.EFFICIENT_ATTENTION]
        with sdpa_kernel(backends):
            return F.scaled_dot_product_attention(q, k, v)
    raise ConfigError(f"unknown SDPA policy {policy!r}; valid: {', '.join(SDPA_POLICIES)}")


def backend_name(device: torch.device, dtype: torch.dtype, policy: str = "default") -> str:
    """Best description of which SDPA backend a dense call runs, for the record."""
    if policy == "pi3":
        return "sdpa[flash]" if dtype == torch.bfloat16 else "sdpa[math|efficient]"
    if device.type == "cpu":
        return "sdpa[cpu_flash]" if dtype in (torch.float32, torch.float64) else "sdpa[default]"
    if device.type == "cuda":
        return "sdpa[flash]" if dtype in (torch.float16, torch.bfloat16) else "sdpa[efficient]"
    return "sdpa[default]"
