"""Test-facing name of the key-seeded weight recipe; the implementation is production code
(`avggt_bench.models.recipe_weights`, used by `build_model` for `weights: random`)."""

from avggt_bench.models.recipe_weights import KEEP_DEFAULT, fill_recipe_weights, recipe_tensor

__all__ = ["KEEP_DEFAULT", "fill_recipe_weights", "recipe_tensor"]
