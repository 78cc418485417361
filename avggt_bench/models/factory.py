"""`build_model(name, **overrides)`: the one call the Hydra job, scripts and notebooks use."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from avggt_bench.attention.config import as_attention_config, resolve_attention
from avggt_bench.attention.routes import build_route
from avggt_bench.errors import ConfigError
from avggt_bench.models.checkpoint import load_checkpoint, random_weights
from avggt_bench.models.pi3.model import PI3, PI3_SMALL, Pi3
from avggt_bench.models.recipe_weights import fill_recipe_weights
from avggt_bench.models.vggt.model import VGGT, VGGT_1B, VGGT_SMALL
from avggt_bench.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelPreset:
    """How to build one named model; `hub_id` is the official checkpoint (None if there is none)."""

    name: str
    family: str
    make: Callable[[bool, str], nn.Module]  # (memory_lean, sdpa_policy) -> module
    hub_id: str | None
    skip_prefixes: tuple[str, ...] = ()
    optional_keys: tuple[str, ...] = ()
    sdpa_policy: str = "default"
    random_scale: float = 0.03


MODELS: Registry[ModelPreset] = Registry("model preset")
MODELS.add(
    "vggt",
    lambda: ModelPreset(
        "vggt",
        "vggt",
        lambda lean, policy: VGGT(VGGT_1B, lean),
        "facebook/VGGT-1B",
        ("track_head.",),
    ),
    "VGGT-1B (facebook/VGGT-1B), 24 global layers",
)
MODELS.add(
    "vggt_small",
    lambda: ModelPreset(
        "vggt_small", "vggt", lambda lean, policy: VGGT(VGGT_SMALL, lean), None, ("track_head.",)
    ),
    "VGGT topology at width 384 (DINOv2 ViT-S/14), for CPU work; no official checkpoint",
)

MODELS.add(
    "pi3",
    lambda: ModelPreset(
        "pi3",
        "pi3",
        lambda lean, policy: Pi3(PI3, policy),
        "yyfz233/Pi3",
        optional_keys=("image_mean", "image_std"),
        sdpa_policy="pi3",
        random_scale=0.02,
    ),
    "π³ (yyfz233/Pi3), 36 decoder blocks, 18 global layers",
)
MODELS.add(
    "pi3_small",
    lambda: ModelPreset(
        "pi3_small",
        "pi3",
        lambda lean, policy: Pi3(PI3_SMALL, policy),
        None,
        optional_keys=("image_mean", "image_std"),
        sdpa_policy="pi3",
        random_scale=0.02,
    ),
    "π³ topology at width 384 (DINOv2 ViT-S/14, 6 heads), for CPU work; no official checkpoint",
)

OVERRIDES = ("attention", "checkpoint", "memory_lean", "device", "random_scale", "sdpa_policy")
SDPA_SETTINGS = ("official", "default")


def build_model(name: str, **overrides: Any) -> nn.Module:
    """Build a model preset with its attention routes and weights.

    Overrides: `attention` (preset name such as "dense", or a mapping of attention config),
    `checkpoint` (local file or hub id; None = deterministic random weights, recorded as
    `weights: random`), `memory_lean` (default True), `device` (default "cpu"),
    `random_scale` (std of the random weights), `sdpa_policy`: `official` (the model's own SDPA
    backend policy, bit-faithful; π³ restricts fp32 to the math/efficient kernels) or `default`
    (PyTorch's choice, i.e. the fused kernels the accelerated routes use: for timing parents).
    The returned module carries `.preset`, `.weights` (WeightsInfo), `.attention_config` and
    `.route_strings` for the record.
    """
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ConfigError(
            f"unknown build_model override(s) {unknown}; valid: {', '.join(OVERRIDES)}"
        )
    preset = MODELS.build(name)
    attention = as_attention_config(overrides.get("attention", "dense"))
    memory_lean = bool(overrides.get("memory_lean", True))
    checkpoint = overrides.get("checkpoint")
    device = torch.device(overrides.get("device") or "cpu")

    setting = overrides.get("sdpa_policy") or "official"
    if setting not in SDPA_SETTINGS:
        raise ConfigError(f"sdpa_policy={setting!r}; valid: {', '.join(SDPA_SETTINGS)}")
    policy = preset.sdpa_policy if setting == "official" else "default"
    with torch.device("meta"):
        model = preset.make(memory_lean, policy)
    model = model.to_empty(device="cpu")
    if hasattr(model, "init_constants"):  # buffers that are constants, not weights
        model.init_constants()
    if checkpoint:
        weights = load_checkpoint(
            model, str(checkpoint), preset.skip_prefixes, preset.optional_keys
        )
    else:
        scale = float(overrides.get("random_scale", preset.random_scale))
        fill_recipe_weights(model, scale)
        weights = random_weights(scale)

    routes, resolved = resolve_attention(attention, preset.family, model.num_global_layers)
    model.set_routes([build_route(r, policy) for r in routes])
    model.preset = preset
    model.weights = weights
    model.attention_config = resolved
    model.route_strings = routes
    return model.to(device).eval()


def model_from_config(cfg: DictConfig, device: torch.device | str = "cpu") -> nn.Module:
    """`build_model` from a job config's `model` and `attention` groups (the Hydra job and the
    layer-role analysis build their model with this one call)."""
    return build_model(
        cfg.model.name,
        attention=cfg.attention,
        checkpoint=cfg.model.get("checkpoint"),
        memory_lean=cfg.model.get("memory_lean", True),
        sdpa_policy=cfg.model.get("sdpa_policy", "official"),
        device=str(device),
    )


def model_info(model: nn.Module) -> dict[str, Any]:
    """What the record says about a built model."""
    return {
        "preset": model.preset.name,
        "family": model.preset.family,
        "memory_lean": getattr(model, "memory_lean", None),
        "sdpa_policy": model.sdpa_policy,
        "parameters": sum(p.numel() for p in model.parameters()),
        **model.weights.as_dict(),
    }
