"""The dense parent of an accelerated model: its predictions on the same input, for fidelity.

The parent is the same model with every global layer routed `global` (same weights, precision and
device). Its compact reference (cameras and subsampled maps) is cached on disk by a content hash
of the input, so a sweep computes it once: the dense job writes it, the variants read it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avggt_bench.attention.routes import dense_routes
from avggt_bench.metrics.fidelity import Reference
from avggt_bench.records import writes_files

log = logging.getLogger(__name__)


def reference_key(model: nn.Module, scene_images: torch.Tensor, extra: dict[str, Any]) -> str:
    """Hash of what determines the dense predictions: weights, input bytes, run settings."""
    digest = hashlib.sha256()
    ident = {"preset": model.preset.name, "weights": model.weights.as_dict(), **extra}
    digest.update(json.dumps(ident, sort_keys=True, default=str).encode())
    digest.update(scene_images.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def load_reference(cache_dir: Path, key: str) -> Reference | None:
    path = cache_dir / f"{key}.pt"
    if not path.is_file():
        return None
    try:
        return Reference(**torch.load(path, weights_only=True))
    except Exception as exc:  # a broken cache entry is recomputed, not trusted
        log.warning("ignoring unreadable dense reference %s (%s)", path, exc)
        return None


def save_reference(cache_dir: Path, key: str, ref: Reference) -> None:
    if not writes_files():  # frame-parallel: rank 0 writes the same reference
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{key}.tmp"
    torch.save(vars(ref), tmp)
    tmp.replace(cache_dir / f"{key}.pt")


def dense_parent_predictions(model: nn.Module, forward: Callable[[], Any]) -> Any:
    """Run `forward` with every global layer dense, then restore the model's own routes."""
    routes = list(model.routes)
    model.set_routes(dense_routes(len(routes), model.sdpa_policy))
    try:
        return forward()
    finally:
        model.set_routes(routes)


def dense_parent_reference(model: nn.Module, forward: Callable[[], Any]) -> Reference:
    """The dense parent's compact reference (cameras and subsampled maps)."""
    return Reference.from_predictions(dense_parent_predictions(model, forward))
