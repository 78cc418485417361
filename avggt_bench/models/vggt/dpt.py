"""VGGT's DPT head for depth and point maps (facebookresearch/vggt `vggt/heads/dpt_head.py`).

Reads the patch tokens of four aggregator layers, fuses them into a full-resolution map and
activates it. Frames run in chunks (8 by default), which bounds the head's activation memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _interpolate(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def _centred_span(span: float, n: int, device: torch.device) -> torch.Tensor:
    """n float32 samples on [-span (n-1)/n, span (n-1)/n], endpoints evaluated left to right."""
    end = span * (n - 1) / n
    return torch.linspace(-span * (n - 1) / n, end, steps=n, dtype=torch.float32, device=device)


def uv_embedding(
    height: int, width: int, channels: int, aspect: float, device: torch.device
) -> torch.Tensor:
    """The sin/cos embedding of a normalised uv grid, `[channels, height, width]` float32.

    The grid spans ±aspect/diag by ±1/diag, sampled at pixel centres; upstream:
    `vggt/heads/utils.py::position_grid_to_embed`. The head adds it, scaled by 0.1, to every
    level and to the fused output.
    """
    diag = (aspect**2 + 1.0) ** 0.5
    sx, sy = aspect / diag, 1.0 / diag
    u = _centred_span(sx, width, device)
    v = _centred_span(sy, height, device)
    n = channels // 4
    omega = torch.arange(n, dtype=torch.float64, device=device)
    omega = 1.0 / 100 ** (omega / (channels / 4.0))
    uu = u.double()[None, :].expand(height, width).reshape(-1)
    vv = v.double()[:, None].expand(height, width).reshape(-1)
    angle_u, angle_v = uu[:, None] * omega[None], vv[:, None] * omega[None]
    emb = torch.cat((angle_u.sin(), angle_u.cos(), angle_v.sin(), angle_v.cos()), dim=-1).float()
    return emb.view(height, width, channels).permute(2, 0, 1)


class ResidualConvUnit(nn.Module):
    """conv2(relu(conv1(relu(x)))) + relu(x): the official in-place ReLU makes the skip relu(x)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FusionBlock(nn.Module):
    def __init__(self, features: int, has_skip: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)  # first: the official key order
        if has_skip:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None = None, size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            size = (int(x.shape[-2] * 2), int(x.shape[-1] * 2))
        return self.out_conv(_interpolate(x, size))


class Scratch(nn.Module):
    def __init__(self, in_channels: Sequence[int], features: int, output_dim: int | None) -> None:
        super().__init__()
        for i, ch in enumerate(in_channels, start=1):
            setattr(self, f"layer{i}_rn", nn.Conv2d(ch, features, 3, padding=1, bias=False))
        self.refinenet1 = FusionBlock(features)
        self.refinenet2 = FusionBlock(features)
        self.refinenet3 = FusionBlock(features)
        self.refinenet4 = FusionBlock(features, has_skip=False)
        head_features = features // 2 if output_dim is not None else features
        self.output_conv1 = nn.Conv2d(features, head_features, 3, padding=1)
        if output_dim is not None:
            self.output_conv2 = nn.Sequential(
                nn.Conv2d(head_features, 32, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, output_dim, 1),
            )

    def fuse(self, levels: list[torch.Tensor]) -> torch.Tensor:
        r1, r2, r3, r4 = (getattr(self, f"layer{i}_rn")(x) for i, x in enumerate(levels, start=1))
        out = self.refinenet4(r4, size=r3.shape[2:])
        out = self.refinenet3(out, r3, size=r2.shape[2:])
        out = self.refinenet2(out, r2, size=r1.shape[2:])
        out = self.refinenet1(out, r1)
        return self.output_conv1(out)


def _activate(raw: torch.Tensor, activation: str) -> tuple[torch.Tensor, torch.Tensor]:
    fmap = raw.permute(0, 2, 3, 1)
    values, conf = fmap[..., :-1], fmap[..., -1]
    if activation == "exp":
        values = torch.exp(values)
    elif activation == "inv_log":
        values = torch.sign(values) * torch.expm1(torch.abs(values))
    else:
        raise ValueError(f"unknown DPT activation {activation!r}")
    return values, 1 + conf.exp()


class DPTHead(nn.Module):
    """Dense prediction head over aggregator layers `layers` (default 4, 11, 17, 23)."""

    def __init__(
        self,
        dim_in: int,
        output_dim: int,
        activation: str,
        features: int = 256,
        out_channels: Sequence[int] = (256, 512, 1024, 1024),
        layers: Sequence[int] = (4, 11, 17, 23),
        patch_size: int = 14,
        frames_chunk_size: int = 8,
    ) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.patch_size = patch_size
        self.activation = activation
        self.frames_chunk_size = frames_chunk_size
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, oc, 1) for oc in out_channels)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_channels[0], out_channels[0], 4, stride=4),
                nn.ConvTranspose2d(out_channels[1], out_channels[1], 2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_channels[3], out_channels[3], 3, stride=2, padding=1),
            ]
        )
        self.scratch = Scratch(out_channels, features, output_dim)

    def forward(
        self, tokens: Sequence[torch.Tensor | None], image_hw: tuple[int, int], patch_start: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`tokens[i]` is aggregator output A_i `[B, S, P, 2C]`; returns values and confidence."""
        frames = tokens[self.layers[0]].shape[1]
        chunk = self.frames_chunk_size
        if chunk is None or chunk >= frames:
            return self._forward(tokens, image_hw, patch_start, 0, frames)
        parts = [
            self._forward(tokens, image_hw, patch_start, s, min(s + chunk, frames))
            for s in range(0, frames, chunk)
        ]
        return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)

    def _forward(
        self,
        tokens: Sequence[torch.Tensor | None],
        image_hw: tuple[int, int],
        patch_start: int,
        start: int,
        end: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image_hw
        h, w = height // self.patch_size, width // self.patch_size
        aspect = width / height
        levels = []
        for j, layer in enumerate(self.layers):
            x = tokens[layer][:, start:end, patch_start:]
            batch, frames = x.shape[:2]
            x = self.norm(x.reshape(batch * frames, -1, x.shape[-1]))
            x = x.permute(0, 2, 1).reshape(x.shape[0], x.shape[-1], h, w)
            x = self.projects[j](x)
            x = x + (0.1 * uv_embedding(h, w, x.shape[1], aspect, x.device)[None]).to(x.dtype)
            levels.append(self.resize_layers[j](x))
        out = self.scratch.fuse(levels)
        out = _interpolate(out, (int(h * self.patch_size), int(w * self.patch_size)))
        out = out + (0.1 * uv_embedding(height, width, out.shape[1], aspect, out.device)[None]).to(
            out.dtype
        )
        values, conf = _activate(self.scratch.output_conv2(out), self.activation)
        return (
            values.view(batch, frames, *values.shape[1:]),
            conf.view(batch, frames, *conf.shape[1:]),
        )
