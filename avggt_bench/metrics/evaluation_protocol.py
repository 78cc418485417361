"""The evaluation part of a dataset preset, validated once, with every default and compat switch
made explicit so the record can store its effective value.

Keys read from the preset (as `avggt_bench.data.presets.Preset` validates them):
`task`, `outputs`, `gt_compare`, `alignment`, `metrics`, `thresholds`, `aggregation`,
`report_unit`, `compat` (and `pair_order` at top level, an alias of `compat.pair_order`). Other keys
(name, dataset, sampling, loader options) are ignored here. Extra keys inside `alignment` and
`outputs` are listed, with their defaults, in `ALIGNMENT_DEFAULTS` / `OUTPUT_DEFAULTS`; compat
switches the metrics read are in `COMPAT_DEFAULTS` (the loader's, e.g. `colmap_half_pixel`, pass
through untouched).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from avggt_bench.data.presets import AGGREGATIONS, REPORT_UNITS, TASKS
from avggt_bench.errors import ConfigError
from avggt_bench.metrics.depth import ALIGNMENTS as DEPTH_ALIGNMENTS
from avggt_bench.metrics.pose import ORDERS

POINT_ALIGNMENTS = (
    "umeyama_icp",
    "umeyama",
    "median_scale_shift_crop224_icp",
    "bbox_scale_center",
    "none",
)
TRAJ_ALIGNMENTS = ("sim3", "se3", "none")
SCANNET_ALIGNMENTS = (*TRAJ_ALIGNMENTS, "bbox_scale_center")  # type: the trajectory's; CD: bbox

# Metric groups and the metric names that request them.
GROUP_METRICS = {
    "pose": ("rra", "rta", "auc"),
    "trajectory": ("ate", "are", "rpe_trans", "rpe_rot", "rpe"),
    "points": (
        "acc",
        "comp",
        "nc",
        "nc1",
        "nc2",
        "chamfer",
        "chamfer_mean",
        "chamfer_sum",
        "dtu_overall",
        "dtu",
    ),
    "scannet_cd": ("cd",),
    "depth": ("abs_rel", "sq_rel", "rmse", "log_rmse", "delta1", "delta2", "delta3", "delta"),
}
TASK_GROUPS = {
    "relpose": ("pose",),
    "trajectory": ("trajectory",),
    "mv_recon": ("points",),
    "scannet_recon": ("trajectory", "scannet_cd"),
    "video_depth": ("depth",),
    "mono_depth": ("depth",),
}
TASK_DEFAULTS = {
    "relpose": {
        "alignment": "none",
        "aggregation": "pooled_pairs",
        "metrics": ["rra", "rta", "auc"],
    },
    "trajectory": {
        "alignment": "sim3",
        "aggregation": "per_scene_mean",
        "metrics": ["ate", "rpe_trans", "rpe_rot"],
    },
    "mv_recon": {
        "alignment": "umeyama_icp",
        "aggregation": "per_scene_mean",
        "metrics": ["acc", "comp", "nc"],
    },
    "scannet_recon": {
        "alignment": "bbox_scale_center",
        "aggregation": "per_scene_mean",
        "metrics": ["cd", "ate", "are", "rpe_rot", "rpe_trans"],
    },
    "video_depth": {
        "alignment": "scale_shift_l1_adam",
        "aggregation": "pixel_weighted",
        "metrics": ["abs_rel", "delta1"],
    },
    "mono_depth": {
        "alignment": "scale",
        "aggregation": "pixel_weighted",
        "metrics": ["abs_rel", "delta1"],
    },
}
ALIGNMENT_DEFAULTS: dict[str, Any] = {
    "icp_threshold": 0.1,  # canonical metres for every dataset (DTU's 100 mm included)
    "trajectory": "sim3",  # trajectory group's alignment when `type` is not a trajectory one
    "points": "umeyama_icp",  # points group's alignment when the task is not mv_recon
    "per": None,  # depth: frame | sequence (default: sequence for video, frame for mono)
    "max_depth": None,  # depth mask g < max_depth (Sintel / Bonn 70)
    "clip_max": None,  # depth: clip the aligned prediction (Sintel 70)
    "crop": 224,  # centre crop of median_scale_shift_crop224_icp
    "umeyama": False,  # FastVGGT `use_proj`: Umeyama before ICP in the median variant
    "max_points": None,  # seeded subsample of the clouds (FastVGGT 999,999); relpose extras: 1M
    "seed": 33,  # of that subsample (FastVGGT's seed)
    "drop_nonfinite": False,  # drop non-finite predicted points instead of failing the scene
    "dtu_seed": 0,  # shuffle of the DTU official radius downsampling
}
ALIGNMENT_ALIASES = {"clip": "clip_max", "use_proj": "umeyama"}  # names used in conf/dataset
OUTPUT_DEFAULTS: dict[str, Any] = {
    "points_source": "point_head",  # or depth_unproject (metrics/adapters.py pred_points)
    "conf_threshold": None,  # ScanNet Chamfer cut; None: adapters.CONF_CUTS per kind of conf
}
COMPAT_DEFAULTS: dict[str, Any] = {
    "pair_order": "vggt",
    "traj_input": "c2w",
    "traj_align": None,  # None or sim3: the standard alignment only; sim3_then_origin (FastVGGT)
    "gt_relative_to_first": False,  # both trajectories relative to their first frame
    "k_rescale": "per_axis",
    "median_mode": None,  # None: lower for the median variant (compat default), numpy for depth
    "proj_after_subsample": False,
    "dtu_bbox": "python_port",
    "points_source": None,  # alias of outputs.points_source
}


@dataclass(frozen=True)
class Protocol:
    """A preset's evaluation keys, validated and completed once per job and passed, as is, to
    `evaluate_scene` for every scene and to `aggregate`."""

    task: str
    gt_compare: str
    alignment: dict[str, Any]
    outputs: dict[str, Any]
    metrics: tuple[str, ...]
    thresholds: tuple[float, ...]
    aggregation: str
    report_unit: str
    compat: dict[str, Any] = field(default_factory=dict)

    @property
    def unit_factor(self) -> float:
        return REPORT_UNITS[self.report_unit]

    @property
    def trajectory_alignment(self) -> str:
        kind = self.alignment["type"]
        return kind if kind in TRAJ_ALIGNMENTS else self.alignment["trajectory"]

    @property
    def points_alignment(self) -> str:
        return self.alignment["type"] if self.task == "mv_recon" else self.alignment["points"]

    @property
    def groups(self) -> tuple[str, ...]:
        """Metric groups to compute: the task's own, plus any group a metric name asks for."""
        out = list(TASK_GROUPS[self.task])
        for group, names in GROUP_METRICS.items():
            if group not in out and any(m in names for m in self.metrics):
                out.append(group)
        return tuple(out)

    def wants(self, *names: str) -> bool:
        return any(n in self.metrics for n in names)

    def effective(self) -> dict[str, Any]:
        """Every key with its effective value (for the record)."""
        return {
            "task": self.task,
            "gt_compare": self.gt_compare,
            "alignment": dict(self.alignment),
            "outputs": dict(self.outputs),
            "metrics": list(self.metrics),
            "thresholds": list(self.thresholds),
            "aggregation": self.aggregation,
            "report_unit": self.report_unit,
            "compat": dict(self.compat),
            "groups": list(self.groups),
        }

    @classmethod
    def from_preset(cls, preset: Mapping[str, Any]) -> Protocol:
        """Validate and complete a preset (DictConfig or dict); ConfigError on bad values."""
        p = _plain(preset)
        task = p.get("task")
        if task not in TASKS:
            raise ConfigError(f"dataset preset task={task!r}; valid: {', '.join(TASKS)}")
        d = TASK_DEFAULTS[task]
        alignment = p.get("alignment") or {}
        if isinstance(alignment, str):
            alignment = {"type": alignment}
        alignment = {ALIGNMENT_ALIASES.get(k, k): v for k, v in alignment.items()}
        alignment = {**ALIGNMENT_DEFAULTS, "type": d["alignment"], **alignment}
        if task == "relpose" and alignment["max_points"] is None:
            alignment["max_points"] = 1_000_000  # optional point metrics on <= 1M pairs
        outputs = {**OUTPUT_DEFAULTS, **(p.get("outputs") or {})}
        compat = {**COMPAT_DEFAULTS, **(p.get("compat") or {})}
        if outputs.get("points") in ("depth_unproject", "depth"):
            outputs["points_source"] = "depth_unproject"
        if compat.get("points_source"):
            outputs["points_source"] = compat["points_source"]
        if compat["traj_align"] == "sim3":
            compat["traj_align"] = None
        if p.get("pair_order") is not None:
            compat["pair_order"] = p["pair_order"]
        proto = cls(
            task=task,
            gt_compare=str(p.get("gt_compare") or "input"),
            alignment=alignment,
            outputs=outputs,
            metrics=tuple(str(m) for m in (p.get("metrics") or d["metrics"])),
            thresholds=tuple(float(t) for t in (p.get("thresholds") or (3, 5, 15, 30))),
            aggregation=str(p.get("aggregation") or d["aggregation"]),
            report_unit=str(p.get("report_unit") or "m"),
            compat=compat,
        )
        proto._validate()
        return proto

    def _validate(self) -> None:
        def check(name: str, value: Any, valid) -> None:
            if value not in valid:
                raise ConfigError(
                    f"dataset preset {name}={value!r}; valid: {', '.join(map(str, valid))}"
                )

        check("aggregation", self.aggregation, AGGREGATIONS)
        check("report_unit", self.report_unit, tuple(REPORT_UNITS))
        kind = self.alignment["type"]
        if self.task == "mv_recon":
            check("alignment.type", kind, POINT_ALIGNMENTS)
        elif self.task == "scannet_recon":
            check("alignment.type", kind, SCANNET_ALIGNMENTS)
        elif self.task == "trajectory":
            check("alignment.type", kind, TRAJ_ALIGNMENTS)
        elif self.task in ("video_depth", "mono_depth"):
            check("alignment.type", kind, DEPTH_ALIGNMENTS)
        check("alignment.trajectory", self.alignment["trajectory"], TRAJ_ALIGNMENTS)
        check("alignment.points", self.alignment["points"], POINT_ALIGNMENTS)
        check("alignment.per", self.alignment["per"], (None, "frame", "sequence"))
        check("compat.pair_order", self.compat["pair_order"], ORDERS)
        check("compat.traj_input", self.compat["traj_input"], ("c2w", "w2c"))
        check(
            "compat.traj_align",
            self.compat["traj_align"],
            (None, *TRAJ_ALIGNMENTS, "sim3_then_origin"),
        )
        check("compat.k_rescale", self.compat["k_rescale"], ("per_axis", "pi3_max_scale"))
        check("compat.median_mode", self.compat["median_mode"], (None, "lower", "numpy"))
        check("compat.dtu_bbox", self.compat["dtu_bbox"], ("python_port", "symmetric"))
        check(
            "outputs.points_source",
            self.outputs["points_source"],
            ("point_head", "depth_unproject"),
        )
        if self.aggregation in ("pooled_pairs", "per_category_mean") and "pose" not in self.groups:
            raise ConfigError(
                f"aggregation={self.aggregation} needs a relpose task or pose metrics"
            )
        if not self.thresholds or min(self.thresholds) <= 0:
            raise ConfigError(f"thresholds must be positive numbers, got {list(self.thresholds)}")


def as_protocol(protocol: Protocol | Mapping[str, Any]) -> Protocol:
    """The `Protocol` itself, or one validated from a preset mapping (ConfigError if invalid)."""
    return protocol if isinstance(protocol, Protocol) else Protocol.from_preset(protocol)


def _plain(preset: Mapping[str, Any]) -> dict[str, Any]:
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(preset, DictConfig):
            return OmegaConf.to_container(preset, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return {k: (_plain(v) if isinstance(v, Mapping) else v) for k, v in dict(preset).items()}
