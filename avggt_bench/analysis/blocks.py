"""Where the analysed parts of an alternating-attention model live.

The tools address blocks by role: the patch embedding, frame block i, global layer g and the heads.
VGGT and π³ are mapped here; another model joins by defining `analysis_blocks()` returning a
`BlockMap` (no other change needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from avggt_bench.errors import ConfigError

KINDS = ("global", "frame")


@dataclass
class BlockMap:
    """The modules of one model by role; `frame[i]` and `global_[g]` are transformer Blocks."""

    patch_embed: nn.Module
    frame: list[nn.Module]
    global_: list[nn.Module]
    heads: dict[str, nn.Module] = field(default_factory=dict)

    def blocks(self, kind: str) -> list[nn.Module]:
        if kind not in KINDS:
            raise ConfigError(f"layer kind {kind!r}; valid: {', '.join(KINDS)}")
        return self.global_ if kind == "global" else self.frame


def block_map(model: nn.Module) -> BlockMap:
    """The BlockMap of a VGGT or π³ model (or the model's own `analysis_blocks()`)."""
    if hasattr(model, "analysis_blocks"):
        return model.analysis_blocks()
    family = getattr(model, "family", None)
    if family == "vggt":
        agg = model.aggregator
        return BlockMap(
            patch_embed=agg.patch_embed,
            frame=list(agg.frame_blocks),
            global_=list(agg.global_blocks),
            heads={
                "camera_head": model.camera_head,
                "depth_head": model.depth_head,
                "point_head": model.point_head,
            },
        )
    if family == "pi3":
        names = (
            "point_decoder",
            "point_head",
            "conf_decoder",
            "conf_head",
            "camera_decoder",
            "camera_head",
        )
        return BlockMap(
            patch_embed=model.encoder,
            frame=[model.decoder[d] for d in range(0, len(model.decoder), 2)],
            global_=[model.decoder[d] for d in range(1, len(model.decoder), 2)],
            heads={name: getattr(model, name) for name in names},
        )
    raise ConfigError(
        f"no block map for model family {family!r}: the analysis knows vggt and pi3; give the "
        "model an `analysis_blocks()` method returning avggt_bench.analysis.blocks.BlockMap"
    )
