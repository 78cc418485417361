"""Layer-role analysis (the study of the AVGGT paper, arXiv 2512.02541) as a Hydra job: top-k pair
classes per layer, the 180° rotation probe and the per-block profiler, on any model preset,
checkpoint and attention preset.

    python -m avggt_bench.analyze task=pairs model=vggt_small num_views=16
    python -m avggt_bench.analyze task=profile profile.views=[4,8,16,32]
    python -m avggt_bench.analyze model=vggt model.checkpoint=facebook/VGGT-1B device=cuda

Tables (CSV + markdown), figures (PNG) and `summary.json` go to `out_dir`
(default `results/analysis/<model>_<weights>/`, weights `random` without a checkpoint).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from avggt_bench.analysis.inputs import synthetic_input
from avggt_bench.analysis.outputs import weights_label, write_summary
from avggt_bench.analysis.tasks import GROUPS, pairs_task, probe_task, profile_task
from avggt_bench.errors import ConfigError
from avggt_bench.models import model_from_config
from avggt_bench.paths import config_dir
from avggt_bench.precision import resolve_device

log = logging.getLogger("avggt_bench.analyze")
ANALYSES = ("pairs", "probe", "profile")

if not OmegaConf.has_resolver("weights_label"):
    OmegaConf.register_new_resolver("weights_label", weights_label)


def parse_tasks(value: Any) -> list[str]:
    """`all`, one task name, or a comma list / sequence of names, validated."""
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    else:
        names = [str(v) for v in value]
    if names == ["all"]:
        return list(ANALYSES)
    bad = [n for n in names if n not in ANALYSES]
    if bad or not names:
        raise ConfigError(f"task={value!r}: valid tasks are {', '.join(ANALYSES)} or all")
    return names


def run_analysis(cfg: DictConfig) -> dict[str, Any]:
    """Build the model, render the scene, run the chosen tasks; returns the summary."""
    tasks = parse_tasks(cfg.task)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    device = resolve_device(cfg.get("device"))
    model = model_from_config(cfg, device)
    weights = "random" if model.weights.random else weights_label(cfg.model.get("checkpoint"))
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scene_cfg = OmegaConf.to_container(cfg.scene, resolve=True)
    meta = {
        "model": cfg.model.name,
        "weights": weights,
        "attention": cfg.attention.get("name", "custom"),
        "views": int(cfg.num_views),
        "image": f"{scene_cfg['width']}x{scene_cfg['height']}",
        "scene": "synthetic",
        "seed": int(cfg.seed),
        "device": str(device),
    }
    opts = OmegaConf.to_container(cfg.analysis, resolve=True)
    summary: dict[str, Any] = {
        **meta,
        "routes": model.route_strings,
        "threads": torch.get_num_threads(),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "tasks": {},
    }
    if weights == "random":
        summary["note"] = (
            "random weights (deterministic recipe): the numbers describe the architecture, "
            "not a trained model; pass model.checkpoint for the paper's study"
        )
    if "pairs" in tasks or "probe" in tasks:
        scene = synthetic_input(int(cfg.num_views), seed=int(cfg.seed), **scene_cfg)
        scene.images = scene.images.to(device)
        groups = opts.get("groups", "auto")
        if groups == "auto":
            groups = GROUPS.get(model.family)
        if "pairs" in tasks:
            summary["tasks"]["pairs"] = pairs_task(model, scene, opts, out_dir, meta, groups)
        if "probe" in tasks:
            probe_opts = OmegaConf.to_container(cfg.probe, resolve=True)
            summary["tasks"]["probe"] = probe_task(model, scene, opts, probe_opts, out_dir, meta)
    if "profile" in tasks:
        views = [int(v) for v in cfg.profile.views]
        big = synthetic_input(max(views), seed=int(cfg.seed), **scene_cfg).images.to(device)
        prof_meta = {
            **meta,
            "views": ",".join(str(v) for v in views),
            "threads": torch.get_num_threads(),
        }
        summary["tasks"]["profile"] = profile_task(
            model, lambda n: big[:n], views, cfg.profile, out_dir, prof_meta
        )
    previous = out_dir / "summary.json"
    if previous.is_file():  # a later single-task run keeps the other tasks' summaries
        try:
            kept = json.loads(previous.read_text()).get("tasks", {})
        except (OSError, ValueError):
            kept = {}
        summary["tasks"] = {**kept, **summary["tasks"]}
    write_summary(previous, summary)
    log.info("analysis (%s) -> %s", ", ".join(tasks), out_dir)
    return summary


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="analyze")
def _hydra_main(cfg: DictConfig) -> None:
    run_analysis(cfg)


def main(argv: list[str] | None = None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    _hydra_main()


if __name__ == "__main__":
    main()
