"""Expected results, the mapping: which published accuracy numbers each protocol preset should
reproduce, read from `avggt_bench/resources/expected_results.csv` and validated.

One line per published number names a row of `published_results.csv` (source, table, dataset,
num_frames, model, metric; value and unit are read from there, never copied), the key of our
metric, and an absolute tolerance in the published unit with its reason. Loading checks every
line against the presets (`conf/dataset/*.yaml` with a `task` key), the published rows, the
model map (`published_variants.csv`), the metric keys each preset computes and the units, so a
wrong mapping stops the report with the line named. `report/expected.py` builds the table.

    python -m avggt_bench.report.expected_map    # validate the file, print the mapping
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from avggt_bench.errors import ConfigError
from avggt_bench.paths import PACKAGE_DIR, config_dir
from avggt_bench.report.published import SOURCE as PUBLISHED_FILE
from avggt_bench.report.published import VARIANTS_FILE, variants

EXPECTED_FILE = PACKAGE_DIR / "resources" / "expected_results.csv"
ROW_KEY = ("source", "table", "dataset", "num_frames", "model", "metric")
"""The fields that name one row of published_results.csv (unique together)."""
COLUMNS = ("preset", *ROW_KEY, "our_metric", "tolerance", "reason")

# published metric names that measure accuracy (everything else there is speed, memory or counts)
ACCURACY_METRIC = re.compile(
    r"^(?:(?:auc|rra|rta)@\d+|ate|are|rpe_\w+|acc|comp|nc[12]?|chamfer\w*|cd|abs_rel|delta\d)$"
)
ANGLE_KEYS = ("are", "rpe_rot")  # degrees (metrics/trajectory.py, evo's rotation_angle_deg)
UNITLESS_KEYS = ("nc", "nc1", "nc2")  # published with unit "-"


@dataclass(frozen=True)
class Expectation:
    """One published accuracy number a preset should reproduce, resolved and validated."""

    preset: str
    published_model: str
    family: str
    variant: str  # our attention preset
    metric: str  # as published
    our_metric: str  # key in the record's metrics.accuracy.metrics
    value: float
    unit: str
    tolerance: float
    reason: str
    source: str
    table: str
    dataset: str
    num_frames: str
    confidence: str

    @property
    def row_key(self) -> tuple[str, ...]:
        """The published row it names, as `ROW_KEY`."""
        return (self.source, self.table, self.dataset, self.num_frames, self.published_model,
                self.metric)  # fmt: skip

    @property
    def frames(self) -> int | None:
        """The published frame count when it is one number (else the preset's own selection)."""
        return int(self.num_frames) if self.num_frames.isdigit() else None


def metric_unit(key: str, report_unit: str) -> str | None:
    """The unit our metric `key` is recorded in, for a preset that reports lengths in
    `report_unit` (metrics/evaluate.py converts length keys); None for a key we do not know."""
    from avggt_bench.metrics.evaluate import LENGTH_KEYS  # torch: only when validating

    if re.fullmatch(r"(?:auc|rra|rta)@\d+", key):
        return "%"  # metrics/pose.py::pose_table reports percent (0-100)
    if key in LENGTH_KEYS:
        return report_unit
    if key in ANGLE_KEYS:
        return "deg"
    if key in UNITLESS_KEYS:
        return "-"
    return None


def protocol_presets(conf: Path | None = None) -> dict[str, dict[str, Any]]:
    """Protocol preset name -> its YAML (uninterpolated): the presets with a `task` key."""
    folder = (conf or config_dir()) / "dataset"
    out = {}
    for path in sorted(folder.glob("*.yaml")):
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        if isinstance(cfg, dict) and "task" in cfg:
            out[path.stem] = cfg
    return out


def _read_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV whose lines starting with '#' are comments."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the expected-results file {path}: {exc}") from exc
    data = [(n, line) for n, line in enumerate(lines, 1) if line.strip() and line[0] != "#"]
    if not data:
        raise ConfigError(f"{path}: no header line; the columns are {', '.join(COLUMNS)}")
    reader = csv.DictReader([line for _, line in data])
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ConfigError(
            f"{path}: missing column(s) {', '.join(missing)}; the columns are {', '.join(COLUMNS)}"
        )
    return [(n, row) for (n, _), row in zip(data[1:], reader)]


def _published_rows(path: Path) -> dict[tuple[str, ...], dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return {tuple(r[k] for k in ROW_KEY): r for r in csv.DictReader(f)}


def _check_metric(where: str, key: str, preset: dict[str, Any]) -> None:
    """The preset computes `key` (`auc@30` needs `auc` among its metrics and 30 among its
    thresholds)."""
    base, _, threshold = key.partition("@")
    metrics = [str(m) for m in preset.get("metrics") or []]
    thresholds = [str(t) for t in preset.get("thresholds") or []]
    if base not in metrics or (threshold and threshold not in thresholds):
        raise ConfigError(
            f"{where}: our_metric {key!r} is not computed by preset {preset.get('name')!r} "
            f"(metrics {metrics}, thresholds {thresholds}); use one of its keys"
        )


def load_expectations(
    path: Path = EXPECTED_FILE,
    *,
    published: Path = PUBLISHED_FILE,
    variants_file: Path = VARIANTS_FILE,
    conf: Path | None = None,
) -> list[Expectation]:
    """The expected-results file, every row resolved against the presets (`conf/dataset`),
    `published_results.csv` and `published_variants.csv`; ConfigError naming the line otherwise."""
    presets = protocol_presets(conf)
    rows = _published_rows(published)
    models = variants(variants_file)
    out: list[Expectation] = []
    seen: set[tuple[str, ...]] = set()
    for line, row in _read_rows(path):
        where = f"{path.name} line {line}"
        name = (row["preset"] or "").strip()
        if name not in presets:
            raise ConfigError(
                f"{where}: unknown protocol preset {name!r} (a conf/dataset/*.yaml with a `task` "
                f"key). Valid: {', '.join(presets)}"
            )
        key = tuple((row[k] or "").strip() for k in ROW_KEY)
        pub = rows.get(key)
        if pub is None:
            named = ", ".join(f"{k}={v!r}" for k, v in zip(ROW_KEY, key))
            raise ConfigError(
                f"{where}: no row of {published.name} has {named}; copy the six fields from "
                "that file"
            )
        if (name, *key) in seen:
            raise ConfigError(f"{where}: the same published row is mapped to {name} twice")
        seen.add((name, *key))
        if pub["model"] not in models:
            raise ConfigError(
                f"{where}: published model {pub['model']!r} has no family and attention preset "
                f"in {variants_file.name}; add it there or drop this line"
            )
        try:
            value = float(pub["value"])
        except ValueError:
            raise ConfigError(
                f"{where}: the published value {pub['value']!r} is not a number; drop this line"
            ) from None
        our = (row["our_metric"] or "").strip()
        _check_metric(where, our, presets[name])
        unit = metric_unit(our, str(presets[name].get("report_unit") or "m"))
        if unit != pub["unit"]:
            raise ConfigError(
                f"{where}: our {our!r} is in {unit or 'an unknown unit'} for preset {name}, the "
                f"published {pub['metric']!r} in {pub['unit'] or 'no unit'}; map a metric of the "
                "same unit (or fix the preset's report_unit)"
            )
        try:
            tolerance = float(row["tolerance"])
        except (TypeError, ValueError):
            tolerance = math.nan
        if not tolerance >= 0:
            raise ConfigError(
                f"{where}: tolerance {row['tolerance']!r} is not a number >= 0 (absolute, in "
                f"{unit})"
            )
        if not (row["reason"] or "").strip():
            raise ConfigError(f"{where}: say why the tolerance is {tolerance:g} (reason column)")
        family, variant = models[pub["model"]]
        out.append(
            Expectation(
                preset=name,
                published_model=pub["model"],
                family=family,
                variant=variant,
                metric=pub["metric"],
                our_metric=our,
                value=value,
                unit=unit,
                tolerance=tolerance,
                reason=row["reason"].strip(),
                source=pub["source"],
                table=pub["table"],
                dataset=pub["dataset"],
                num_frames=pub["num_frames"],
                confidence=pub["confidence"],
            )
        )
    return out


def _why(row: dict[str, str]) -> str:
    try:
        float(row["value"])
    except ValueError:
        return f"published value is {row['value']}, not a number"
    return "no preset"


def unmapped(
    expectations: list[Expectation] | None = None, published: Path = PUBLISHED_FILE
) -> pd.DataFrame:
    """Every published accuracy number that no preset maps (`no preset`), and the published
    outcomes that are not numbers (OOM)."""
    exps = load_expectations() if expectations is None else expectations
    mapped = {
        (e.source, e.table, e.dataset, e.num_frames, e.published_model, e.metric) for e in exps
    }
    rows = [
        {**{k: r[k] for k in ROW_KEY}, "value": r["value"], "unit": r["unit"], "why": _why(r)}
        for key, r in _published_rows(published).items()
        if ACCURACY_METRIC.match(r["metric"]) and key not in mapped
    ]
    return pd.DataFrame(rows, columns=[*ROW_KEY, "value", "unit", "why"])


if __name__ == "__main__":
    loaded = load_expectations()
    for e in loaded:
        print(f"{e.preset} | {e.published_model} | {e.our_metric} {e.value:g} ±{e.tolerance:g}")
    print(f"{len(loaded)} expectations; {len(unmapped(loaded))} published numbers without a preset")
