"""2D rotary position embedding of VGGT and π³ (facebookresearch/vggt `vggt/layers/rope.py`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


class RoPE2D:
    """Rotates the first half of each head by the row position and the second half by the column.

    cos/sin tables are cached per (size, half dim, device, dtype). Each table entry is the same
    single fp32 product `p * inv_freq` the official code computes, so a larger table than needed
    gives identical values.
    """

    def __init__(self, base: float = 100.0) -> None:
        self.base = base
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def tables(
        self, size: int, dim: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        key = (size, dim, device, dtype)
        if key not in self._tables:
            # 1 / pow(base, e), never pow(base, -e): the two differ in the last bit.
            inv_freq = 1.0 / (self.base ** (torch.arange(0, dim, 2, device=device).float() / dim))
            positions = torch.arange(size, device=device, dtype=inv_freq.dtype)
            angles = positions[:, None] * inv_freq[None, :]
            angles = torch.cat((angles, angles), dim=-1).to(dtype)
            self._tables[key] = (angles.cos(), angles.sin())
        return self._tables[key]

    def __call__(self, t: torch.Tensor, pos: torch.Tensor, table_size: int) -> torch.Tensor:
        """Rotate `t` `[batch, heads, n, d]` by integer positions `pos` `[batch, n, 2]` (y, x)."""
        half = t.shape[-1] // 2
        cos, sin = self.tables(table_size, half, t.device, t.dtype)
        t_y, t_x = t.chunk(2, dim=-1)
        return torch.cat(
            (_rotate(t_y, pos[..., 0], cos, sin), _rotate(t_x, pos[..., 1], cos, sin)), dim=-1
        )


def _rotate(u: torch.Tensor, p: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    c = F.embedding(p, cos)[:, None]
    s = F.embedding(p, sin)[:, None]
    half = u.shape[-1] // 2
    rotated = torch.cat((-u[..., half:], u[..., :half]), dim=-1)
    return (u * c) + (rotated * s)


def patch_positions(
    frames: int, h: int, w: int, num_special: int, device: torch.device
) -> torch.Tensor:
    """Integer (y, x) positions `[frames, P, 2]`: specials (0, 0), patch (r, c) at (r+1, c+1)."""
    ys, xs = torch.meshgrid(
        torch.arange(1, h + 1, device=device), torch.arange(1, w + 1, device=device), indexing="ij"
    )
    grid = torch.stack((ys.reshape(-1), xs.reshape(-1)), dim=-1)
    special = torch.zeros(num_special, 2, dtype=grid.dtype, device=device)
    return torch.cat((special, grid), dim=0)[None].expand(frames, -1, -1)
