"""The precision policies rehearsed on CPU: which dtype each part of a model runs in under CPU bf16
autocast (the same policy as CUDA's), and FastVGGT's release policy (issue 14 item 5)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from avggt_bench.attention.config import load_preset
from avggt_bench.errors import ConfigError
from avggt_bench.models import build_model
from avggt_bench.precision import (
    WEIGHT_PRECISIONS,
    autocast_context,
    heads_context,
    resolve_precision,
)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
VGGT_HEADS = ("camera_head.", "depth_head.", "point_head.")
PI3_HEADS = ("point_head.", "conf_head.", "camera_head.")  # under autocast-off in π³'s forward
PI3_TRUNK = ("encoder.", "decoder.", "point_decoder.", "conf_decoder.", "camera_decoder.")


def output_dtypes(model: nn.Module, run) -> dict[str, torch.dtype]:
    """Output dtype of every Linear / Conv2d of `model` during `run()` (forward hooks)."""
    seen: dict[str, torch.dtype] = {}

    def hook(name: str):
        def record(_module, _inputs, out) -> None:  # returns None: the output is unchanged
            seen.setdefault(name, out.dtype)

        return record

    hooks = [
        m.register_forward_hook(hook(name))
        for name, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))
    ]
    try:
        run()
    finally:
        for h in hooks:
            h.remove()
    return seen


def part(seen: dict[str, torch.dtype], prefixes: tuple[str, ...]) -> set[torch.dtype]:
    return {d for name, d in seen.items() if name.startswith(prefixes)}


@pytest.fixture(scope="module")
def vggt_small():
    return build_model("vggt_small").eval()


@pytest.fixture(scope="module")
def pi3_small():
    return build_model("pi3_small").eval()


def images(views=2, h=28, w=42):
    return torch.rand(1, views, 3, h, w, generator=torch.Generator().manual_seed(0))


def forward(model, x, precision):
    with torch.inference_mode(), autocast_context(precision, x.device):
        return model(x)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


# --- resolution --------------------------------------------------------------------------------


def test_auto_follows_the_device_and_the_preset_policy():
    fast = load_preset("fastvggt")
    assert fast["precision_policy"] == "bf16_weights_autocast"
    assert load_preset("fastvggt_clean")["precision_policy"] == "bf16_weights_autocast"
    assert resolve_precision("auto", CUDA, attention=fast) == "bf16_weights_autocast"
    assert resolve_precision(None, CUDA, attention=load_preset("avggt_9")) == "bf16"
    assert resolve_precision("auto", CUDA) == "bf16"
    # CPU auto stays fp32 for every preset; an explicit policy wins over the preset's
    assert resolve_precision("auto", CPU, attention=fast) == "fp32"
    assert resolve_precision("bf16_weights", CUDA, attention=fast) == "bf16_weights"
    assert WEIGHT_PRECISIONS["bf16_weights_autocast"] == torch.bfloat16


def test_bad_policies_name_the_valid_ones():
    with pytest.raises(ConfigError, match="bf16_weights_autocast"):
        resolve_precision("bf17", CPU)
    with pytest.raises(ConfigError, match=r"attention\.precision_policy"):
        resolve_precision("auto", CUDA, attention={"precision_policy": "half"})


def test_heads_context_restores_after_the_policy_block():
    with autocast_context("bf16_weights_autocast", CPU), heads_context(CPU):
        assert torch.is_autocast_enabled("cpu")
    with autocast_context("bf16", CPU):
        with heads_context(CPU):
            assert not torch.is_autocast_enabled("cpu")
        assert torch.is_autocast_enabled("cpu")
    with heads_context(CPU):  # outside any policy: heads keep autocast off
        assert not torch.is_autocast_enabled("cpu")


# --- CPU bf16 autocast: trunk bf16, heads fp32 (as on CUDA) --------------------------------------


def test_vggt_small_bf16_autocast_trunk_bf16_heads_fp32(vggt_small):
    x = images()
    box = {}
    seen = output_dtypes(
        vggt_small,
        lambda: box.setdefault(
            "on",
            heads_autocast(vggt_small, lambda: box.setdefault("p", forward(vggt_small, x, "bf16"))),
        ),
    )
    assert not box["on"]
    assert part(seen, ("aggregator.",)) == {torch.bfloat16}
    assert part(seen, VGGT_HEADS) == {torch.float32}
    ref = forward(vggt_small, x, "fp32")
    # bf16 trunk: 8 mantissa bits through 24 layers of random weights; 5 % of the range bounds
    # the drift (measured ~1e-2), a dtype or head bug is O(1)
    for name in ("pose_enc", "depth", "world_points"):
        assert box["p"][name].dtype == torch.float32, name
        assert rel_err(box["p"][name], ref[name]) < 5e-2, name


def test_pi3_small_bf16_autocast_trunk_bf16_heads_fp32(pi3_small):
    x = images()
    box = {}
    seen = output_dtypes(pi3_small, lambda: box.setdefault("p", forward(pi3_small, x, "bf16")))
    assert part(seen, PI3_TRUNK) == {torch.bfloat16}
    assert part(seen, PI3_HEADS) == {torch.float32}
    ref = forward(pi3_small, x, "fp32")
    for name in ("local_points", "camera_poses"):
        assert rel_err(box["p"][name], ref[name]) < 5e-2, name


def heads_autocast(model: nn.Module, run, device_type: str = "cpu") -> bool:
    """Whether autocast is on when the camera head starts (a forward pre-hook)."""
    box = {}

    def record(_module, _inputs) -> None:
        box["on"] = torch.is_autocast_enabled(device_type)

    hook = model.camera_head.register_forward_pre_hook(record)
    try:
        run()
    finally:
        hook.remove()
    return box["on"]


def test_fastvggt_policy_runs_the_heads_in_bf16_autocast(vggt_small):
    """The release's policy on CPU: bf16 weights, autocast on, heads included (the dense model:
    the policy is independent of the merging, whose presets select it, see above)."""
    x = images()
    ref = forward(vggt_small, x, "fp32")
    model = copy.deepcopy(vggt_small).to(torch.bfloat16)
    xb = x.to(torch.bfloat16)
    box = {}

    def run():
        box["on"] = heads_autocast(
            model, lambda: box.setdefault("p", forward(model, xb, "bf16_weights_autocast"))
        )

    seen = output_dtypes(model, run)
    assert part(seen, ("aggregator.",)) == {torch.bfloat16}
    assert part(seen, VGGT_HEADS) == {torch.bfloat16}
    assert box["on"]
    # the no-autocast variant keeps autocast off in the heads (so does plain bf16, tested above)
    assert not heads_autocast(model, lambda: forward(model, xb, "bf16_weights"))
    # against the fp32 model (measured 1e-2 of the range at most)
    for name in ("pose_enc", "depth", "world_points"):
        assert box["p"][name].dtype == torch.bfloat16, name
        assert rel_err(box["p"][name], ref[name]) < 5e-2, name


@pytest.mark.gpu
def test_fastvggt_release_policy_on_cuda_is_close_to_fp32():
    """mystorm16/FastVGGT `infer_vggt_and_reconstruct`: bf16 weights inside bf16 autocast."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x = images(views=4, h=112, w=154).cuda()
    ref_model = build_model("vggt_small", attention="fastvggt", device="cuda").eval()
    ref = forward(ref_model, x, "fp32")
    model = build_model("vggt_small", attention="fastvggt", device="cuda").eval()
    model.to(torch.bfloat16)
    seen = output_dtypes(model, lambda: forward(model, x.bfloat16(), "bf16_weights_autocast"))
    assert part(seen, VGGT_HEADS) == {torch.bfloat16}
    pred = forward(model, x.bfloat16(), "bf16_weights_autocast")
    for name in ("pose_enc", "depth", "world_points"):
        assert rel_err(pred[name], ref[name]) < 5e-2, name
