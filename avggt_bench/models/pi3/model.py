"""π³ re-implemented key for key (yyfz/Pi3 `pi3/models/pi3.py`), with routable global attention.

DINOv2 encoder, 5 shared register tokens, a 36-block decoder alternating frame (even) and global
(odd) attention, three head decoders on the concatenated outputs of blocks 34 and 35, point /
confidence heads by pixel shuffle and an SVD-orthogonalised camera head. Every attention uses π³'s
SDPA backend policy. No view is special: the network is permutation-equivariant in the views.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from avggt_bench.attention.base import DenseMixer
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import Route, dense_routes
from avggt_bench.models.dinov2 import DINO_VITL14_REG, DINO_VITS14_REG, DinoArch, DinoV2
from avggt_bench.models.images import IMAGENET_MEAN, IMAGENET_STD, check_images
from avggt_bench.models.layers import Block
from avggt_bench.models.predictions import Predictions
from avggt_bench.models.rope import RoPE2D
from avggt_bench.models.trunk import checked_routes, run_trunk
from avggt_bench.parallel.outputs import gather_predictions
from avggt_bench.parallel.shard import Shard, shard_for
from avggt_bench.precision import heads_context

NUM_REGISTERS = 5
PI3_POLICY = "pi3"


@dataclass(frozen=True)
class Pi3Arch:
    """Architecture hyper-parameters (those of the official π³); `pi3_small` keeps the topology at
    width 384."""

    name: str
    dino: DinoArch
    dim: int
    num_heads: int
    depth: int = 36
    head_blocks: int = 5
    camera_dim: int = 512
    img_size: int = 518
    patch_size: int = 14


PI3 = Pi3Arch("pi3", DINO_VITL14_REG, dim=1024, num_heads=16)
PI3_SMALL = Pi3Arch("pi3_small", DINO_VITS14_REG, dim=384, num_heads=6, camera_dim=192)


class HeadDecoder(nn.Module):
    """Linear 2C -> C, 5 blocks (no LayerScale, no qk-norm, RoPE), Linear C -> out."""

    def __init__(self, dim: int, heads: int, depth: int, out: int, rope: RoPE2D) -> None:
        super().__init__()
        self.projects = nn.Linear(2 * dim, dim)
        self.blocks = nn.ModuleList(
            Block(dim, heads, norm_eps=1e-6, layer_scale=False, rope=rope) for _ in range(depth)
        )
        self.linear_out = nn.Linear(dim, out)

    def forward(self, z, pos, layout, mixer) -> torch.Tensor:
        y = self.projects(z)
        for block in self.blocks:
            y = block(y, pos, layout, mixer)
        return self.linear_out(y)


class LinearPixelHead(nn.Module):
    """Linear to channels x 14 x 14 per patch token, then pixel shuffle to full resolution."""

    def __init__(self, dim: int, channels: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(dim, channels * patch * patch)

    def forward(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        f = self.proj(tokens).transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
        return F.pixel_shuffle(f, self.patch).permute(0, 2, 3, 1)  # [batch, H, W, channels]


class ResLinear(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.res_conv1 = nn.Linear(dim, dim)
        self.res_conv2 = nn.Linear(dim, dim)
        self.res_conv3 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = F.relu(self.res_conv3(F.relu(self.res_conv2(F.relu(self.res_conv1(x))))))
        return x + u


class CameraHead(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.res_conv = nn.ModuleList([ResLinear(dim), ResLinear(dim)])
        self.more_mlps = nn.Sequential(
            nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim), nn.ReLU()
        )
        self.fc_t = nn.Linear(dim, 3)
        self.fc_rot = nn.Linear(dim, 9)

    def forward(self, tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """`tokens` `[batch, h*w, dim]` -> camera-to-world `[batch, 4, 4]`."""
        x = tokens
        for block in self.res_conv:
            x = block(x)
        x = x.permute(0, 2, 1).reshape(x.shape[0], -1, h, w).contiguous()
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        x = self.more_mlps(x)
        rot = svd_orthogonalize(self.fc_rot(x))
        pose = torch.zeros(x.shape[0], 4, 4, dtype=x.dtype, device=x.device)
        pose[:, :3, :3] = rot
        pose[:, :3, 3] = self.fc_t(x)
        pose[:, 3, 3] = 1
        return pose


def svd_orthogonalize(m9: torch.Tensor) -> torch.Tensor:
    """Nearest proper rotation to the row-normalised 3x3 matrix of 9 numbers (as π³'s
    `pi3/models/layers/camera_head.py`)."""
    m = F.normalize(m9.reshape(-1, 3, 3), p=2, dim=-1).transpose(1, 2)
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    v = vh.mH
    det = torch.det(v @ u.transpose(1, 2))
    v = torch.cat((v[:, :, :2], det[:, None, None] * v[:, :, 2:]), dim=2)
    return v @ u.transpose(1, 2)


class Pi3(nn.Module):
    """π³ with the official parameter names; `forward` returns `Predictions`."""

    family = "pi3"
    num_special = NUM_REGISTERS

    def __init__(self, arch: Pi3Arch = PI3, sdpa_policy: str = PI3_POLICY) -> None:
        super().__init__()
        self.arch = arch
        self.memory_lean = None  # only blocks 34 and 35 feed the heads: nothing else is kept
        self.sdpa_policy = sdpa_policy
        self.mixer = DenseMixer(sdpa_policy)
        self.rope = RoPE2D(100.0)
        dim = arch.dim
        self.register_token = nn.Parameter(torch.zeros(1, 1, NUM_REGISTERS, dim))
        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.encoder = DinoV2(
            arch.dino, arch.img_size, arch.patch_size, mask_token=False, mixer=self.mixer
        )
        self.decoder = nn.ModuleList(
            Block(
                dim,
                arch.num_heads,
                norm_eps=1e-6,
                qk_norm=True,
                qk_cast_to_v=True,
                rope=self.rope,
            )
            for _ in range(arch.depth)
        )
        heads = (dim, arch.num_heads, arch.head_blocks)
        self.point_decoder = HeadDecoder(*heads, dim, self.rope)
        self.point_head = LinearPixelHead(dim, 3, arch.patch_size)
        self.conf_decoder = HeadDecoder(*heads, dim, self.rope)
        self.conf_head = LinearPixelHead(dim, 1, arch.patch_size)
        self.camera_decoder = HeadDecoder(*heads, arch.camera_dim, self.rope)
        self.camera_head = CameraHead(arch.camera_dim)
        self.routes: list[Route] = dense_routes(self.num_global_layers, sdpa_policy)

    def init_constants(self) -> None:
        """Restore the normalisation buffers (after `to_empty`)."""
        with torch.no_grad():
            self.image_mean.copy_(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
            self.image_std.copy_(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    @property
    def num_global_layers(self) -> int:
        return self.arch.depth // 2

    def global_block(self, g: int) -> nn.Module:
        """Global layer g is decoder block 2g + 1."""
        return self.decoder[2 * g + 1]

    def set_routes(self, routes: Sequence[Route]) -> None:
        self.routes = checked_routes(routes, self.num_global_layers)

    def decode(
        self, images: torch.Tensor, shard: Shard | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, TokenLayout]:
        """Encoder + decoder: `Z` `[B*N, P, 2C]` (blocks 34 and 35), positions and layout; with a
        `shard`, `images` and `Z` are this rank's views (`avggt_bench.parallel`)."""
        batch, views, _, height, width = images.shape
        grid = (height // self.arch.patch_size, width // self.arch.patch_size)
        x = ((images - self.image_mean) / self.image_std).reshape(batch * views, 3, height, width)
        patches = self.encoder(x)
        regs = self.register_token.expand(batch * views, -1, -1, -1).reshape(
            batch * views, NUM_REGISTERS, -1
        )
        blocks = list(self.decoder)  # frame attention in the even blocks, global in the odd
        last = self.num_global_layers - 1
        out = run_trunk(
            (regs,),
            patches,
            batch,
            grid,
            blocks[0::2],
            blocks[1::2],
            self.routes,
            keep={last},
            frame_mixer=self.mixer,
            shard=shard,
        )
        z = out.layers[last]
        return z.reshape(batch * views, *z.shape[2:]), out.positions, out.layout.per_frame()

    def forward(self, images: torch.Tensor) -> Predictions:
        """`images` `[B, N, 3, H, W]` or `[N, 3, H, W]`, RGB in [0, 1], H, W multiples of 14."""
        images = check_images(images, self.arch.patch_size)
        shard = shard_for(images.shape[1])  # None unless frame-parallel (avggt_bench.parallel)
        if shard is not None:  # every head is per view: nothing to gather before the outputs
            images = shard.own_frames(images, self.register_token.device)
        batch, views, _, height, width = images.shape
        h, w = height // self.arch.patch_size, width // self.arch.patch_size
        z, pos, frame_layout = self.decode(images, shard)
        y_point = self.point_decoder(z, pos, frame_layout, self.mixer)[:, NUM_REGISTERS:]
        y_conf = self.conf_decoder(z, pos, frame_layout, self.mixer)[:, NUM_REGISTERS:]
        y_cam = self.camera_decoder(z, pos, frame_layout, self.mixer)[:, NUM_REGISTERS:]
        with heads_context(images.device):  # fp32 heads unless the precision policy says not
            head = torch.promote_types(y_point.dtype, torch.float32)  # fp32, or fp64 in tests
            xyz = self.point_head(y_point.to(head), h, w)
            conf = self.conf_head(y_conf.to(head), h, w)
            poses = self.camera_head(y_cam.to(head), h, w)
            z_depth = torch.exp(xyz[..., 2:3])
            local = torch.cat((xyz[..., 0:1] * z_depth, xyz[..., 1:2] * z_depth, z_depth), dim=-1)
            local = local.reshape(batch, views, height, width, 3)
            conf = conf.reshape(batch, views, height, width, 1)
            poses = poses.reshape(batch, views, 4, 4)
            homog = torch.cat((local, torch.ones_like(local[..., :1])), dim=-1)
            points = torch.einsum("bnij,bnhwj->bnhwi", poses, homog)[..., :3]
        pred = to_predictions(local, conf, poses, points)
        return pred if shard is None else gather_predictions(pred, shard)


# which native output fills each `Predictions` field, for the record
SOURCES = {
    "family": "pi3",
    "pose": "inverse(camera_poses)",
    "points": "points",
    "depth": "local_points[...,2]",
}


def to_predictions(
    local: torch.Tensor, conf: torch.Tensor, poses: torch.Tensor, points: torch.Tensor
) -> Predictions:
    """The common schema: world-to-camera from the c2w poses (closed form, float64), depth = z of
    the local points, confidences = sigmoid of the logits, intrinsics estimated (see below)."""
    c2w = poses.double()
    rot_t = c2w[..., :3, :3].transpose(-1, -2)
    w2c = torch.cat((rot_t, -rot_t @ c2w[..., :3, 3:]), dim=-1)
    prob = torch.sigmoid(conf[..., 0])
    return Predictions(
        extrinsics=w2c,
        intrinsics=estimate_intrinsics(local),
        depth=local[..., 2:3],
        depth_conf=prob,
        world_points=points,
        world_points_conf=prob,
        image_hw=(local.shape[2], local.shape[3]),
        points_frame="arbitrary",
        conf_kind="sigmoid",
        world_points_from_depth=True,  # points = camera_poses applied to the local points
        sources=dict(SOURCES),
        raw={"local_points": local, "conf": conf, "camera_poses": poses, "points": points},
    )


def estimate_intrinsics(local: torch.Tensor) -> torch.Tensor:
    """Least-squares focal lengths from the local point map, principal point at (W/2, H/2).

    π³ predicts no intrinsics. With x/z and y/z of every pixel, u - cx = fx·x/z and
    v - cy = fy·y/z; fx, fy minimise the squared pixel residual over all pixels of a view. This is
    the harness's estimate, not part of the official model.
    """
    _, _, height, width, _ = local.shape
    pts = local.double()
    z = pts[..., 2].clamp_min(1e-12)
    a, b = pts[..., 0] / z, pts[..., 1] / z
    u = torch.arange(width, dtype=torch.float64, device=local.device)[None, None, None, :]
    v = torch.arange(height, dtype=torch.float64, device=local.device)[None, None, :, None]
    cx, cy = width / 2, height / 2
    fx = ((u - cx) * a).sum((-1, -2)) / (a * a).sum((-1, -2)).clamp_min(1e-12)
    fy = ((v - cy) * b).sum((-1, -2)) / (b * b).sum((-1, -2)).clamp_min(1e-12)
    k = torch.zeros(*fx.shape, 3, 3, dtype=torch.float64, device=local.device)
    k[..., 0, 0], k[..., 1, 1], k[..., 0, 2], k[..., 1, 2], k[..., 2, 2] = fx, fy, cx, cy, 1.0
    return k
