"""Top-k pair classes, entropy and peakedness per layer.

The AVGGT paper (arXiv 2512.02541) draws the top-50 query→key pairs of each global layer; this
module counts them by class instead.

Each captured (query, key) pair decodes to (frame, slot, special, row, col) for both ends and gets
boolean flags; the primary class is the first true flag in `PRIMARY` order. `gt_corr` needs scene
geometry at the network input resolution (GT depth, intrinsics, world-to-camera poses); without it
the flag is absent and reported as null.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from avggt_bench.analysis.attention_stats import LayerCapture
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.errors import DataError

PRIMARY = ("self", "special", "same_position", "gt_corr", "same_row", "same_frame", "other")
FLAGS = (
    "self",
    "special",
    "special_key",
    "special_query",
    "same_position",
    "same_row",
    "same_frame",
    "gt_corr",
)
PATCH = 14


@dataclass
class SceneGeometry:
    """Ground truth at the network input resolution: z-depth `[S, H, W]` (0 = invalid), K
    `[S, 3, 3]` and world-to-camera `[S, 3, 4]` (OpenCV), pixel centres at integer coordinates."""

    depth: torch.Tensor
    intrinsics: torch.Tensor
    extrinsics: torch.Tensor

    def validate(self, layout: TokenLayout, patch: int = PATCH) -> None:
        s, h, w = self.depth.shape
        want = (layout.frames, layout.grid[0] * patch, layout.grid[1] * patch)
        if (s, h, w) != want:
            raise DataError(
                f"GT depth is {s}x{h}x{w} (S x H x W) but the network input is "
                f"{want[0]}x{want[1]}x{want[2]}; give depth, K and poses at the network input size"
            )


def decode_tokens(idx: torch.Tensor, layout: TokenLayout) -> dict[str, torch.Tensor]:
    """frame, slot, is_special, row, col (-1 for special tokens) of token indices."""
    per, ns, w = layout.tokens_per_frame, layout.num_special, layout.grid[1]
    frame, slot = idx // per, idx % per
    special = slot < ns
    patch = (slot - ns).clamp(min=0)
    row = torch.where(special, -1, patch // w)
    col = torch.where(special, -1, patch % w)
    return {"frame": frame, "slot": slot, "special": special, "row": row, "col": col}


def gt_correspondence(
    q_idx: torch.Tensor,
    k_idx: torch.Tensor,
    layout: TokenLayout,
    geometry: SceneGeometry,
    radius: int = 1,
    occlusion_check: bool = False,
    patch: int = PATCH,
) -> torch.Tensor:
    """True where the key patch is within `radius` patches (Chebyshev) of the query patch centre
    reprojected with GT depth into the key's view (in front, inside the image; optionally not
    occluded: projected depth within 5 % of the key view's GT depth). Specials and same-frame
    pairs are False."""
    q, k = decode_tokens(q_idx, layout), decode_tokens(k_idx, layout)
    ok = ~q["special"] & ~k["special"] & (q["frame"] != k["frame"])
    depth = geometry.depth.double()
    kmat, e = geometry.intrinsics.double(), geometry.extrinsics.double()
    _, height, width = depth.shape
    u = patch * q["col"].clamp(min=0).double() + (patch - 1) / 2
    v = patch * q["row"].clamp(min=0).double() + (patch - 1) / 2
    ui = (u + 0.5).floor().long().clamp(0, width - 1)
    vi = (v + 0.5).floor().long().clamp(0, height - 1)
    fq, fk = q["frame"], k["frame"]
    d = depth[fq, vi, ui]
    ok &= d > 0
    kq = kmat[fq]
    cam = torch.stack(
        ((u - kq[:, 0, 2]) * d / kq[:, 0, 0], (v - kq[:, 1, 2]) * d / kq[:, 1, 1], d), dim=-1
    )
    rot_q, t_q = e[fq, :, :3], e[fq, :, 3]
    world = torch.einsum("nji,nj->ni", rot_q, cam - t_q)  # R^T (X - t)
    cam_k = torch.einsum("nij,nj->ni", e[fk, :, :3], world) + e[fk, :, 3]
    z = cam_k[:, 2]
    ok &= z > 1e-9
    zs = torch.where(z > 1e-9, z, torch.ones_like(z))
    kk = kmat[fk]
    pu = kk[:, 0, 0] * cam_k[:, 0] / zs + kk[:, 0, 2]
    pv = kk[:, 1, 1] * cam_k[:, 1] / zs + kk[:, 1, 2]
    ok &= (pu >= -0.5) & (pu < width - 0.5) & (pv >= -0.5) & (pv < height - 0.5)
    pc = ((pu + 0.5) / patch).floor().long()
    pr = ((pv + 0.5) / patch).floor().long()
    near = torch.maximum((pc - k["col"]).abs(), (pr - k["row"]).abs()) <= radius
    ok &= near
    if occlusion_check:
        pui = (pu + 0.5).floor().long().clamp(0, width - 1)
        pvi = (pv + 0.5).floor().long().clamp(0, height - 1)
        dk = depth[fk, pvi, pui]
        ok &= (dk > 0) & ((z - dk).abs() <= 0.05 * dk)
    return ok


def pair_flags(
    q_idx: torch.Tensor,
    k_idx: torch.Tensor,
    layout: TokenLayout,
    geometry: SceneGeometry | None = None,
    radius: int = 1,
    occlusion_check: bool = False,
) -> dict[str, torch.Tensor | None]:
    """The boolean class flags of pairs (q_idx[i], k_idx[i]); `gt_corr` is None without geometry."""
    q, k = decode_tokens(q_idx, layout), decode_tokens(k_idx, layout)
    both = ~q["special"] & ~k["special"]
    cross = q["frame"] != k["frame"]
    flags: dict[str, torch.Tensor | None] = {
        "self": q_idx == k_idx,
        "special": q["special"] | k["special"],
        "special_key": k["special"],
        "special_query": q["special"],
        "same_position": both & cross & (q["row"] == k["row"]) & (q["col"] == k["col"]),
        "same_row": both & cross & (q["row"] == k["row"]) & (q["col"] != k["col"]),
        "same_frame": ~cross & (q_idx != k_idx),
        "gt_corr": None,
    }
    if geometry is not None:
        flags["gt_corr"] = gt_correspondence(
            q_idx, k_idx, layout, geometry, radius, occlusion_check
        )
    return flags


def primary_class(flags: dict[str, torch.Tensor | None]) -> list[str]:
    """The first true flag in PRIMARY order, else `other`, per pair."""
    n = flags["self"].numel()
    out = ["other"] * n
    for name in reversed(PRIMARY[:-1]):
        flag = flags.get(name)
        if flag is None:
            continue
        for i in torch.nonzero(flag).reshape(-1).tolist():
            out[i] = name
    return out


def pair_table(
    cap: LayerCapture,
    geometry: SceneGeometry | None = None,
    radius: int = 1,
    occlusion_check: bool = False,
) -> pd.DataFrame:
    """One row per top-k pair of a layer: rank, probability, both ends decoded, flags, class."""
    layout = cap.layout
    flags = pair_flags(cap.top_queries, cap.top_keys, layout, geometry, radius, occlusion_check)
    q, k = decode_tokens(cap.top_queries, layout), decode_tokens(cap.top_keys, layout)
    data: dict[str, Any] = {
        "layer": cap.layer,
        "kind": cap.kind,
        "rank": range(cap.top_values.numel()),
        "prob": cap.top_values.tolist(),
        "q_token": cap.top_queries.tolist(),
        "k_token": cap.top_keys.tolist(),
    }
    for end, dec in (("q", q), ("k", k)):
        for field in ("frame", "special", "row", "col"):
            data[f"{end}_{field}"] = dec[field].tolist()
    for name in FLAGS:
        flag = flags[name]
        data[name] = flag.tolist() if flag is not None else None
    data["class"] = primary_class(flags)
    return pd.DataFrame(data)


def _class_fractions(classes: list[str], prefix: str, has_gt: bool) -> dict[str, float | None]:
    n = max(len(classes), 1)
    out: dict[str, float | None] = {}
    for name in PRIMARY:
        out[f"{prefix}{name}"] = (
            None if name == "gt_corr" and not has_gt else sum(c == name for c in classes) / n
        )
    return out


def layer_summary(
    cap: LayerCapture,
    geometry: SceneGeometry | None = None,
    radius: int = 1,
    occlusion_check: bool = False,
) -> dict[str, Any]:
    """One table row: top-k class fractions, flag rates, top-1 class fractions, entropies, peak."""
    layout = cap.layout
    has_gt = geometry is not None
    flags = pair_flags(cap.top_queries, cap.top_keys, layout, geometry, radius, occlusion_check)
    row: dict[str, Any] = {
        "layer": cap.layer,
        "kind": cap.kind,
        "route": cap.route,
        "k": int(cap.top_values.numel()),
        "queries": int(cap.queries.numel()),
        "topk_prob_mean": float(cap.top_values.mean()) if cap.top_values.numel() else math.nan,
    }
    row.update(_class_fractions(primary_class(flags), "frac_", has_gt))
    for name in FLAGS:
        flag = flags[name]
        row[f"rate_{name}"] = float(flag.double().mean()) if flag is not None else None
    top1 = pair_flags(cap.queries, cap.top1_key, layout, geometry, radius, occlusion_check)
    row.update(_class_fractions(primary_class(top1), "top1_", has_gt))
    log_keys = cap.num_keys.double().clamp(min=2).log()
    row["entropy"] = float(cap.entropy.mean())
    row["entropy_of_mean"] = float(cap.entropy_of_mean.mean())
    row["entropy_norm"] = float((cap.entropy / log_keys).mean())
    row["entropy_of_mean_norm"] = float((cap.entropy_of_mean / log_keys).mean())
    row["peak_mean"] = float(cap.peak.mean())
    return row
