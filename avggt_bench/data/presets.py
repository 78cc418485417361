"""Protocol presets: the `conf/dataset/<preset>.yaml` schema, validated.

A preset names the loader (`dataset`), the scenes, the frame sampling and everything the metric
layer needs (`task`, `outputs`, `gt_compare`, `alignment`, `metrics`, `thresholds`,
`aggregation`, `report_unit`, `compat`). Keys the schema does not know are loader options
(`variant`, `annotations`, `width`, ...) and are checked against the loader's option list, so a
typo fails with the valid choices before any data is read. Every key is documented in
`conf/dataset/seven_scenes_pi3_dense.yaml` and `datasets/README.md`.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from avggt_bench.data.datasets import DATASETS, loader_class, valid_options
from avggt_bench.data.sampling import Sampler, SamplingConfig, build_sampler
from avggt_bench.errors import ConfigError
from avggt_bench.paths import REPO_DIR

__all__ = [
    "AGGREGATIONS",
    "ALIGNMENTS",
    "COMPAT",
    "INPUT_RECIPES",
    "LISTS_DIR",
    "METRICS",
    "REPORT_UNITS",
    "TASKS",
    "Preset",
    "load_protocol_preset",
    "preset_names",
]

LISTS_DIR = REPO_DIR / "datasets" / "lists"
"""Shipped scene lists and frame lists; relative list paths in presets resolve here."""

TASKS = ("relpose", "trajectory", "mv_recon", "scannet_recon", "video_depth", "mono_depth")
FRAME_ORDERS = ("as_sampled", "ascending")
INVALID_FRAMES = ("drop", "fail_scene")
GT_COMPARE = ("gt_resized_w518", "gt_native", "input")
AGGREGATIONS = ("per_scene_mean", "pooled_pairs", "per_category_mean", "pixel_weighted")
REPORT_UNITS = {"m": 1.0, "mm": 1000.0}
"""Units a preset may report lengths in, and the factor from metres."""
PROVENANCE = ("published", "reconstructed", "partial", "extension", "harness")
INPUT_RECIPES = (
    "model_default",
    "vggt_crop518",
    "pi3_eval512",
    "pi3_eval518",
    "cut3r_512x384",
    "fastvggt_518x392",
    "spann3r_224",
)
METRICS: dict[str, tuple[str, ...]] = {
    "relpose": ("rra", "rta", "auc", "ate", "rpe_trans", "rpe_rot", "acc", "comp", "nc"),
    "trajectory": ("ate", "are", "rpe_trans", "rpe_rot"),
    "mv_recon": (
        "acc", "comp", "nc", "nc1", "nc2", "chamfer_mean", "chamfer_sum", "dtu_overall",
    ),
    "scannet_recon": ("cd", "ate", "are", "rpe_trans", "rpe_rot", "time"),
    "video_depth": ("abs_rel", "sq_rel", "rmse", "log_rmse", "delta1", "delta2", "delta3"),
    "mono_depth": ("abs_rel", "sq_rel", "rmse", "log_rmse", "delta1", "delta2", "delta3"),
}  # fmt: skip
"""Metric names each task may request (relpose extras: the optional ATE / point metrics of the
dense 7-Scenes setting, computed only when the preset lists them)."""
ALIGNMENTS: dict[str, tuple[str, ...]] = {
    "relpose": ("none",),
    "trajectory": ("sim3", "none"),
    "mv_recon": ("umeyama_icp", "umeyama", "median_scale_shift_crop224_icp", "none"),
    "scannet_recon": ("sim3",),
    "video_depth": (
        "scale_shift_l1_adam", "scale_shift_l1", "lstsq_scale_shift", "scale", "median", "metric",
    ),
    "mono_depth": (
        "scale", "median", "scale_shift_l1", "lstsq_scale_shift", "scale_shift_l1_adam", "metric",
    ),
}  # fmt: skip
COMPAT: dict[str, tuple[Any, ...]] = {
    "k_rescale": ("per_axis", "pi3_max_scale"),  # GT intrinsics after resizing (π³: one factor)
    "colmap_half_pixel": ("shift", "ignore"),  # ETH3D principal point (π³ ignores COLMAP's 0.5)
    "pair_order": ("vggt", "pi3", "camera_i", "vggt_first_camera_legacy"),  # see metrics/pose.py
    "traj_input": ("c2w", "w2c"),  # FastVGGT feeds w2c to the trajectory metrics
    "traj_align": ("sim3", "sim3_then_origin"),  # FastVGGT / old evo
    "gt_relative_to_first": (False, True),  # GT c2w re-expressed in the first valid frame
    "median_mode": ("lower", "numpy"),  # torch lower median vs NumPy average
    "proj_after_subsample": (False, True),  # FastVGGT's order of projection and subsampling
    "dtu_bbox": ("python_port", "symmetric"),  # DTU evaluation bounding box
    "points_source": ("point_head", "depth_unproject"),  # which VGGT output is a point map
    "depth_sentinel": ("exclude", "keep"),  # 7-Scenes: keep = SimpleRecon's wrapped 65535 depths
    "nrgbd_principal_point": ("authors", "eval_loaders"),  # (W-1)/2 (get_rays) | W/2 (Spann3R)
}
"""Compat switches and their allowed values (the first is the clean default)."""
OUTPUT_KEYS = ("pose", "points", "depth", "conf_threshold")
AUTO = "auto"


def _choice(where: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], 1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{where}={value!r} is not valid{hint}; choose one of {', '.join(map(str, choices))}"
        )


@dataclass(frozen=True)
class Preset:
    """A validated protocol preset. Build it with `Preset.from_mapping(cfg)` or
    `load_protocol_preset`."""

    name: str
    task: str
    dataset: str
    sampling: SamplingConfig
    root: str | None = None
    scenes: str | tuple[str, ...] = "test"
    frame_order: str = "as_sampled"
    invalid_frames: str = "drop"
    min_frames: int = 1
    max_scenes: int | None = None
    input_recipe: str = "model_default"
    outputs: dict[str, Any] = field(default_factory=dict)
    gt_compare: str = "input"
    alignment: dict[str, Any] = field(default_factory=lambda: {"type": "none"})
    metrics: tuple[str, ...] = ()
    thresholds: tuple[float, ...] = ()
    aggregation: str = "per_scene_mean"
    report_unit: str = "m"
    compat: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    provenance: str = "published"
    load_depth: bool | str = AUTO
    load_points: bool | str = AUTO
    options: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | DictConfig) -> Preset:
        """Validate a preset mapping; unknown keys must be options of the named loader."""
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
        raw = dict(cfg)  # type: ignore[arg-type]
        name = raw.get("name") or "<unnamed>"
        where = f"dataset preset {name!r}"
        for key in ("name", "task", "dataset", "sampling"):
            if key not in raw or raw[key] is None:
                raise ConfigError(f"{where} lacks the required key {key!r}")
        known = {f.name for f in fields(cls)} - {"options"}
        options = {k: v for k, v in raw.items() if k not in known}
        values = {k: v for k, v in raw.items() if k in known}
        values["sampling"] = SamplingConfig.from_mapping(values["sampling"], f"{where}: sampling")
        for key in ("metrics", "thresholds"):
            if key in values:
                values[key] = tuple(values[key] or ())
        if isinstance(values.get("scenes"), list):
            values["scenes"] = tuple(str(s) for s in values["scenes"])
        for key in ("outputs", "compat"):
            values[key] = dict(values.get(key) or {})
        values["alignment"] = dict(values.get("alignment") or {"type": "none"})
        preset = cls(**values, options=options)
        preset.validate()
        return preset

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid key or value and the valid choices."""
        where = f"dataset preset {self.name!r}"
        _choice(f"{where}: task", self.task, TASKS)
        if self.dataset not in DATASETS:
            raise ConfigError(f"{where}: {DATASETS.unknown_message(self.dataset)}")
        _choice(f"{where}: frame_order", self.frame_order, FRAME_ORDERS)
        _choice(f"{where}: invalid_frames", self.invalid_frames, INVALID_FRAMES)
        _choice(f"{where}: gt_compare", self.gt_compare, GT_COMPARE)
        _choice(f"{where}: aggregation", self.aggregation, AGGREGATIONS)
        _choice(f"{where}: report_unit", self.report_unit, tuple(REPORT_UNITS))
        _choice(f"{where}: input_recipe", self.input_recipe, INPUT_RECIPES)
        _choice(f"{where}: provenance", self.provenance, PROVENANCE)
        for key in ("load_depth", "load_points"):
            _choice(f"{where}: {key}", getattr(self, key), (AUTO, True, False))
        for key in ("min_frames", "max_scenes"):
            value = getattr(self, key)
            if value is None and key == "max_scenes":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")
        if "type" not in self.alignment:
            raise ConfigError(f"{where}: alignment needs a 'type'")
        _choice(f"{where}: alignment.type", self.alignment["type"], ALIGNMENTS[self.task])
        for metric in self.metrics:
            _choice(f"{where}: metrics entry", metric, METRICS[self.task])
        if not self.metrics:
            raise ConfigError(f"{where}: metrics is empty; choose from {METRICS[self.task]}")
        for t in self.thresholds:
            if isinstance(t, bool) or not isinstance(t, int | float) or t <= 0:
                raise ConfigError(f"{where}: thresholds must be positive numbers, got {t!r}")
        if self.task == "relpose" and not self.thresholds:
            raise ConfigError(f"{where}: relpose needs thresholds (e.g. [3, 5, 15, 30])")
        for key, value in self.compat.items():
            if key not in COMPAT:
                close = difflib.get_close_matches(key, list(COMPAT), 1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(
                    f"{where}: unknown compat switch {key!r}{hint}; known: {', '.join(COMPAT)}"
                )
            _choice(f"{where}: compat.{key}", value, COMPAT[key])
        for key in self.outputs:
            _choice(f"{where}: outputs key", key, OUTPUT_KEYS)
        if not isinstance(self.scenes, str | tuple) or not self.scenes:
            raise ConfigError(f"{where}: scenes must be a split, a list file or a list of ids")
        cls = loader_class(self.dataset)
        allowed = valid_options(cls) - {"compat", "load_depth", "load_points"}
        unknown = sorted(set(self.options) - allowed)
        if unknown:
            schema = sorted({f.name for f in fields(self)} - {"options"})
            bad = unknown[0]
            close = difflib.get_close_matches(bad, [*schema, *allowed], 1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{where}: unknown key {bad!r}.{hint} Preset keys: {', '.join(schema)}; options "
                f"of the {self.dataset} loader: {', '.join(sorted(allowed - {'root'}))}"
            )

    # ------------------------------------------------------------------ derived values

    @property
    def wants_depth(self) -> bool:
        if self.load_depth != AUTO:
            return bool(self.load_depth)
        if self.task in ("mv_recon", "video_depth", "mono_depth"):
            return True
        return self.task == "relpose" and any(m in self.metrics for m in ("acc", "comp", "nc"))

    @property
    def wants_points(self) -> bool:
        if self.load_points != AUTO:
            return bool(self.load_points)
        return self.task == "scannet_recon"

    def sampler(self, num_views: int | None = None) -> Sampler:
        """A fresh sampler (its own generator) with the `num_views` override applied."""
        return build_sampler(self.sampling.as_dict(), LISTS_DIR).with_count(num_views)

    def build_loader(self) -> Any:
        """The loader with this preset's options (a missing root raises DataError here)."""
        cls = loader_class(self.dataset)
        opts = dict(self.options)
        extra: dict[str, Any] = {}
        common = getattr(cls, "COMMON", {})
        if "compat" in common:
            extra["compat"] = dict(self.compat)
        if "load_depth" in common:
            extra["load_depth"] = self.wants_depth
        if "load_points" in common:
            extra["load_points"] = self.wants_points
        if isinstance(self.scenes, str) and self.scenes in getattr(cls, "splits", ()):
            opts.setdefault("split", self.scenes)
        opts.pop("root", None)
        return DATASETS.build(self.dataset, self.root, **opts, **extra)

    def list_files(self) -> list[Path]:
        """List files this preset reads (scene list, frame list, stride check file)."""
        out = []
        if isinstance(self.scenes, str) and self.scenes.endswith((".txt", ".json")):
            out.append(LISTS_DIR / self.scenes)
        for name in (self.sampling.file, self.sampling.check_file):
            if name:
                out.append(LISTS_DIR / name if not Path(name).is_absolute() else Path(name))
        return out

    def list_hashes(self) -> dict[str, str | None]:
        """sha256 of each list file used (None when absent), for the record."""
        return {
            str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            for p in self.list_files()
        }

    def as_dict(self) -> dict[str, Any]:
        """The fully resolved preset (what the record stores), compat defaults made explicit."""
        out = asdict(self)
        out["sampling"] = self.sampling.as_dict()
        out["metrics"] = list(self.metrics)
        out["thresholds"] = list(self.thresholds)
        out["scenes"] = self.scenes if isinstance(self.scenes, str) else list(self.scenes)
        out["compat"] = {k: self.compat.get(k, v[0]) for k, v in COMPAT.items()}
        out["load_depth"], out["load_points"] = self.wants_depth, self.wants_points
        return out


def preset_names() -> list[str]:
    """Every preset in conf/dataset/ (protocol presets and plain loader configs)."""
    from avggt_bench.paths import config_dir

    return sorted(p.stem for p in (config_dir() / "dataset").glob("*.yaml"))


def load_protocol_preset(name: str, overrides: list[str] | None = None) -> Preset:
    """Compose `dataset=<name>` with the project's Hydra config (paths resolved) and validate.

    `overrides` are Hydra overrides such as `["paths.data=/data", "dataset.max_scenes=2"]`.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from avggt_bench.paths import config_dir

    names = preset_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, 3)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"unknown dataset preset {name!r}.{hint} Valid: {', '.join(names)}")
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"dataset={name}", *(overrides or [])],
            return_hydra_config=False,
        )
    return Preset.from_mapping(_resolve_without_hydra(cfg))


def _resolve_without_hydra(cfg: DictConfig) -> dict[str, Any]:
    """cfg.dataset resolved; `${hydra:runtime.cwd}` (outside a Hydra run) becomes the cwd."""
    root = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(root, dict)
    paths = root.get("paths", {})
    if isinstance(paths, dict) and "${hydra:" in str(paths.get("root", "")):
        paths["root"] = str(Path.cwd())
    merged = OmegaConf.create(root)
    return OmegaConf.to_container(merged.dataset, resolve=True)  # type: ignore[return-value]
