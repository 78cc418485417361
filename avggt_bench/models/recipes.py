"""Input recipes of the evaluation protocols → a `PreprocessConfig`.

A recipe (a preset's `input_recipe`) is how the evaluation code of a paper resized its images
before the network: VGGT's 518-wide crop, π³'s 512- or 518-wide resize, CUT3R's 512×384 crop.

A protocol preset names the recipe its paper used; the model's own preprocess config is what
`model_default` means here (VGGT presets: width 518 crop; the CPU `*_small` presets: their reduced
size). Recipes our preprocessing reproduces only approximately say so in the record.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from avggt_bench.errors import ConfigError
from avggt_bench.models.preprocess_geometry import PreprocessConfig

# recipe -> (preprocess settings, how close our preprocessing is to the recipe)
_RECIPES: dict[str, tuple[dict[str, Any], str]] = {
    "vggt_crop518": ({"mode": "crop", "size": 518}, "exact"),
    "fastvggt_518x392": ({"mode": "crop", "size": 518}, "exact"),
    "pi3_eval518": (
        {"mode": "crop", "size": 518},
        "approximate: bicubic resize to width 518 instead of Lanczos + antialiased bilinear",
    ),
    "pi3_eval512": (
        {"mode": "crop", "size": 504},
        "approximate: bicubic resize to width 504 instead of Lanczos to 512 then bilinear to 504",
    ),
}
UNSUPPORTED = ("cut3r_512x384", "spann3r_224")


def resolve_recipe(
    recipe: str, model_default: PreprocessConfig, family: str
) -> tuple[PreprocessConfig, dict[str, Any]]:
    """The preprocess config for `recipe` and a record entry saying what was applied."""
    if recipe == "model_default":
        return model_default, {
            "requested": recipe,
            "applied": f"model preprocess ({model_default.mode}, {model_default.size})",
            "fidelity": "exact",
            "family": family,
        }
    if recipe in UNSUPPORTED:
        raise ConfigError(
            f"input_recipe={recipe} (DUSt3R-style principal-point crop) is not implemented; "
            "run the preset with dataset.input_recipe=vggt_crop518 and compare with care"
        )
    if recipe not in _RECIPES:
        valid = ", ".join(["model_default", *_RECIPES, *UNSUPPORTED])
        raise ConfigError(f"unknown input_recipe {recipe!r}; valid: {valid}")
    settings, fidelity = _RECIPES[recipe]
    cfg = replace(model_default, **settings)
    return cfg, {"requested": recipe, "applied": settings, "fidelity": fidelity, "family": family}


__all__ = ["UNSUPPORTED", "resolve_recipe"]
