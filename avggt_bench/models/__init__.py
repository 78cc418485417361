"""Model implementations and `build_model`, the one call configs, scripts and notebooks use."""

from avggt_bench.models.factory import MODELS, build_model, model_from_config, model_info
from avggt_bench.models.predictions import Predictions

__all__ = ["MODELS", "Predictions", "build_model", "model_from_config", "model_info"]
