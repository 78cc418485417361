"""VGGT (facebook/VGGT-1B) re-implemented key for key, with routable global attention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from avggt_bench.attention.routes import Route
from avggt_bench.models.dinov2 import DINO_VITL14_REG, DINO_VITS14_REG, DinoArch
from avggt_bench.models.images import check_images
from avggt_bench.models.predictions import Predictions
from avggt_bench.models.vggt.aggregator import NUM_SPECIAL, Aggregator
from avggt_bench.models.vggt.camera_head import CameraHead
from avggt_bench.models.vggt.dpt import DPTHead
from avggt_bench.models.vggt.pose_encoding import pose_encoding_to_extri_intri
from avggt_bench.parallel.outputs import gather_frames, gather_predictions
from avggt_bench.parallel.shard import shard_for
from avggt_bench.precision import heads_context


@dataclass(frozen=True)
class VGGTArch:
    """Architecture hyper-parameters (those of facebookresearch/vggt `vggt/models/vggt.py`); none
    is read from the checkpoint."""

    name: str
    dino: DinoArch
    embed_dim: int
    num_heads: int
    camera_heads: int
    depth: int = 24
    img_size: int = 518
    patch_size: int = 14
    dpt_layers: tuple[int, ...] = (4, 11, 17, 23)
    dpt_features: int = 256
    dpt_out_channels: tuple[int, ...] = (256, 512, 1024, 1024)


# which native output fills each `Predictions` field, for the record
SOURCES = {"family": "vggt", "pose": "camera_head", "points": "world_points", "depth": "depth_head"}

VGGT_1B = VGGTArch("vggt", DINO_VITL14_REG, embed_dim=1024, num_heads=16, camera_heads=16)
VGGT_SMALL = VGGTArch("vggt_small", DINO_VITS14_REG, embed_dim=384, num_heads=6, camera_heads=6)


class VGGT(nn.Module):
    """VGGT with the official parameter names; `forward` returns `Predictions`.

    `memory_lean` keeps only the aggregator outputs the heads read (layers 4, 11, 17, 23) instead of
    all 24: identical numbers, much lower peak memory.
    """

    family = "vggt"
    num_special = NUM_SPECIAL
    sdpa_policy = "default"  # the official VGGT calls SDPA with PyTorch's default selection

    def __init__(self, arch: VGGTArch = VGGT_1B, memory_lean: bool = True) -> None:
        super().__init__()
        self.arch = arch
        self.memory_lean = memory_lean
        self.aggregator = Aggregator(
            arch.dino, arch.embed_dim, arch.depth, arch.num_heads, arch.img_size, arch.patch_size
        )
        dim = 2 * arch.embed_dim
        self.camera_head = CameraHead(dim, arch.camera_heads)
        dpt = dict(
            features=arch.dpt_features,
            out_channels=arch.dpt_out_channels,
            layers=arch.dpt_layers,
            patch_size=arch.patch_size,
        )
        self.point_head = DPTHead(dim, output_dim=4, activation="inv_log", **dpt)
        self.depth_head = DPTHead(dim, output_dim=2, activation="exp", **dpt)

    @property
    def num_global_layers(self) -> int:
        return self.arch.depth

    def global_block(self, g: int) -> nn.Module:
        return self.aggregator.global_blocks[g]

    @property
    def routes(self) -> list[Route]:
        return self.aggregator.routes

    def set_routes(self, routes: Sequence[Route]) -> None:
        self.aggregator.set_routes(routes)

    def kept_layers(self) -> set[int] | None:
        return {*self.arch.dpt_layers, self.arch.depth - 1} if self.memory_lean else None

    def forward(self, images: torch.Tensor) -> Predictions:
        """`images` `[S, 3, H, W]` or `[B, S, 3, H, W]`, RGB in [0, 1], H and W multiples of 14."""
        images = check_images(images, self.arch.patch_size)
        height, width = images.shape[-2:]
        shard = shard_for(images.shape[1])  # None unless frame-parallel (avggt_bench.parallel)
        if shard is not None:
            images = shard.own_frames(images, self.aggregator.camera_token.device)
        tokens, _ = self.aggregator(images, keep=self.kept_layers(), shard=shard)
        last = tokens[self.arch.depth - 1]
        with heads_context(images.device):  # fp32 heads unless the precision policy says not
            if shard is None:
                pose_enc_list = self.camera_head(last)
            else:  # the camera head attends over the frames: gather their camera tokens
                whole = gather_frames(last[:, :, :1], shard, "camera_head")
                own = slice(shard.split.start, shard.split.stop)
                pose_enc_list = [p[:, own] for p in self.camera_head(whole)]
            depth, depth_conf = self.depth_head(tokens, (height, width), NUM_SPECIAL)
            points, points_conf = self.point_head(tokens, (height, width), NUM_SPECIAL)
        pose_enc = pose_enc_list[-1]
        extrinsics, intrinsics = pose_encoding_to_extri_intri(pose_enc.double(), (height, width))
        pred = Predictions(
            extrinsics=extrinsics,
            intrinsics=intrinsics,
            depth=depth,
            depth_conf=depth_conf,
            world_points=points,
            world_points_conf=points_conf,
            image_hw=(height, width),
            pose_enc=pose_enc,
            pose_enc_list=pose_enc_list,
            points_frame="first_camera",
            conf_kind="exp_plus_one",
            world_points_from_depth=False,  # the point head is a head of its own
            sources=dict(SOURCES),
        )
        return pred if shard is None else gather_predictions(pred, shard)
