"""GoToHunt's attention schedule ("Good Token Hunting", arXiv 2605.23892; the release
github.com/zsh2000/gotohunt), method `gotohunt`.

Training-free, on VGGT and π³, in global-layer units (π³'s global layer g is decoder block 2g + 1):
the first `local_layers` global layers run as frame attention; the next ones, up to
`sample_layers`, keep the patch keys/values of every frame on a `stride` x `stride` grid anchored
at patch (0, 0), with every special (camera/register) token kept and every query kept; the rest
stay dense. In the release these are the evaluation flags `--global_as_frame_layers 0 1`,
`--token_ds_layers 2 ... 8`, `--frame_token_downsample 3` with `--ds_keep_register` on by default
(the `Attention.forward` of `mapanything/models/external/vggt/layers/attention.py` keeps
`arange(patch_start_idx)` and the strided patch indices). The query's own dropped key is not added
back and dropped keys get no mean: the strided layers are the existing `sga` route without its
diagonal and mean-fill, and without AVGGT's full first frame (the release strides frame 0 too).
It is AVGGT's allocation turned around: AVGGT subsamples the late layers and keeps the early ones
frame-local; GoToHunt subsamples the early-middle ones and keeps the late ones dense.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from avggt_bench.attention.config import METHODS
from avggt_bench.attention.routes import RouteSpec
from avggt_bench.attention.sga import SGAOptions
from avggt_bench.errors import ConfigError


def strided_route(stride: int, keep_special: bool) -> str:
    """The `sga` route string of one strided layer: grid-kept keys only, no diagonal, no mean."""
    opts = SGAOptions(
        sigma=stride * stride,  # the label only: the explicit stride decides the grid
        stride=(stride, stride),
        keep_special=keep_special,
        keep_first_frame=False,
        diag=False,
        mean=False,
    )
    return str(RouteSpec("sga", opts.route_params()))


@METHODS.register("gotohunt", "GoToHunt: frame attention, then strided keys/values, then dense")
def gotohunt_routes(cfg: Mapping[str, Any], family: str, num_layers: int) -> list[str]:
    local, sample = int(cfg.get("local_layers", 2)), int(cfg.get("sample_layers", 9))
    stride = int(cfg.get("stride", 3))
    if not 0 <= local <= sample <= num_layers:
        raise ConfigError(
            f"gotohunt needs 0 <= local_layers ({local}) <= sample_layers ({sample}) <= the "
            f"{num_layers} global layers of this {family} model"
        )
    if stride < 1:
        raise ConfigError(f"gotohunt stride={stride} must be a positive integer")
    strided = strided_route(stride, bool(cfg.get("keep_special", True)))
    return [
        "frame" if g < local else strided if g < sample else "global" for g in range(num_layers)
    ]
