"""Expected results, the table: per protocol preset and metric, ours (the newest matching
record) beside the published number, the difference, the tolerance and a verdict.

The mapping and its tolerances are data (`report/expected_map.py` reads and validates
`avggt_bench/resources/expected_results.csv`). The report writes `expected_results.md` and `.csv`;
the speed comparison stays in `report/published.py`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from avggt_bench.report.expected_map import Expectation, load_expectations, unmapped

WITHIN = "within"
BEYOND = "beyond tolerance"
NO_RECORD = "no record"
NO_VALUE = "no value in record"
NOT_MEANINGFUL = "not meaningful (random weights)"
NOT_MEANINGFUL_ORACLE = "not meaningful (ground-truth oracle)"
RUN_STATUSES = ("ok", "partial")

RULE = (
    "Verdict `within` when |ours − published| ≤ tolerance; the tolerance is absolute, in the "
    "published unit (AUC/RRA/RTA in % points, lengths in the preset's report unit, ARE in "
    "degrees, NC unitless) and set per row in `avggt_bench/resources/expected_results.csv` with "
    "its reason: the rounding of the published value plus what the preset cannot reproduce (a "
    "reconstructed protocol, unstated settings, a third party's run). `ours` is the newest record "
    "(status ok or partial) of the same preset, model family and attention preset, at the "
    "preset's own frame selection and without sub-key overrides of the attention or dataset "
    "preset (e.g. `attention.sigma=4`, `dataset.max_scenes=2`: those measure something else). "
    "Records with random weights or the ground-truth oracle show their number with the verdict "
    "`not meaningful`."
)


def _changes_a_preset(overrides: Any) -> bool:
    """A sub-key override of the attention or dataset preset (not where the data lives)."""
    for token in str(overrides or "").split():
        key = token.lstrip("+~").partition("=")[0]
        if key.startswith("attention.") or (key.startswith("dataset.") and key != "dataset.root"):
            return True
    return False


def _candidates(ours: pd.DataFrame, exp: Expectation) -> pd.DataFrame:
    """Records of the expectation's preset, family and attention preset, newest last; records of
    the full-size model (named as the family) after those of other sizes."""
    if ours.empty or "dataset" not in ours:
        return ours.iloc[:0]
    base = ours["attention"].astype(str).str.replace(r" \(.*\)$", "", regex=True)
    views = pd.to_numeric(ours["num_views"], errors="coerce")
    same_views = views.isna() | (views == exp.frames if exp.frames is not None else False)
    mine = ours[
        (ours["dataset"] == exp.preset)
        & ours["status"].isin(RUN_STATUSES)
        & (base == exp.variant)
        & ours["model"].astype(str).str.startswith(exp.family)
        & same_views
        & ~ours.get("overrides", pd.Series("", index=ours.index)).map(_changes_a_preset)
    ]
    stamp = mine["finished_at"].fillna(mine["started_at"]) if "finished_at" in mine else None
    full = mine["model"].astype(str) == exp.family
    return mine.assign(_full=full, _stamp=stamp).sort_values(
        ["_full", "_stamp"], kind="stable", na_position="first"
    )


def verdict(ours: float | None, exp: Expectation, meaningful: Any, weights: Any = None) -> str:
    """within / beyond tolerance / not meaningful / no value in record, for one matched record."""
    if ours is None or not math.isfinite(ours):
        return NO_VALUE
    flagged = meaningful is not None and not pd.isna(meaningful) and not bool(meaningful)
    if flagged or weights in ("random", "ground_truth"):
        return NOT_MEANINGFUL_ORACLE if weights == "ground_truth" else NOT_MEANINGFUL
    # a hair of slack for decimal values stored in binary (80.57 - 78.57 vs 2.0)
    return WITHIN if abs(ours - exp.value) <= exp.tolerance + 1e-9 else BEYOND


def comparison(ours: pd.DataFrame, expectations: list[Expectation] | None = None) -> pd.DataFrame:
    """One row per expectation: ours (newest matching record), published, difference
    (ours − published), tolerance and verdict; sorted by preset and metric."""
    exps = load_expectations() if expectations is None else expectations
    rows = []
    for exp in exps:
        found = _candidates(ours, exp)
        row: dict[str, Any] = {
            "preset": exp.preset,
            "published model": exp.published_model,
            "family": exp.family,
            "variant": exp.variant,
            "metric": exp.our_metric,
            "unit": exp.unit,
            "ours": None,
            "published": exp.value,
            "difference": None,
            "tolerance": exp.tolerance,
            "verdict": NO_RECORD,
            "record": None,
            "machine": None,
            "notes": "",
            "source": exp.source,
            "table": exp.table,
            "confidence": exp.confidence,
            "reason": exp.reason,
        }
        if not found.empty:
            rec = found.iloc[-1]
            value = pd.to_numeric(rec.get(f"acc_{exp.our_metric}"), errors="coerce")
            value = None if pd.isna(value) else float(value)
            notes = []
            if rec["model"] != exp.family:
                notes.append(f"model {rec['model']} (published: the full-size {exp.family})")
            if rec["status"] != "ok":
                notes.append(f"status {rec['status']} ({rec.get('acc_scenes')} scenes evaluated)")
            if rec.get("weights") not in (None, "random", "ground_truth"):
                notes.append(f"weights {rec.get('weights')}")
            row.update(
                ours=value,
                difference=None if value is None else value - exp.value,
                verdict=verdict(value, exp, rec.get("acc_meaningful"), rec.get("weights")),
                record=rec.get("run_id"),
                notes="; ".join(notes),
                machine=rec.get("machine"),
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return table.sort_values(["preset", "metric", "family", "variant"], kind="stable")


def _md(table: pd.DataFrame) -> str:
    table = table.astype(object).where(table.notna(), None)  # blank cells, not "nan"
    return table.to_markdown(index=False, floatfmt=".4g", missingval="")


def markdown(table: pd.DataFrame, missing: pd.DataFrame) -> str:
    """`expected_results.md`: the rule, the counts, one section per preset, the tolerances'
    reasons, and the published accuracy numbers without a preset."""
    counts = table["verdict"].value_counts() if not table.empty else pd.Series(dtype=int)
    lines = [
        "# Expected results",
        "",
        RULE,
        "",
        f"{len(table)} published numbers over {table['preset'].nunique() if len(table) else 0} "
        "presets: " + (", ".join(f"{n} {v}" for v, n in counts.items()) or "none") + ".",
        "",
    ]
    shown = ["published model", "variant", "metric", "unit", "ours", "published", "difference"]
    shown += ["tolerance", "verdict", "source", "notes"]
    for preset, group in table.groupby("preset", sort=True):
        cols = [c for c in shown if c != "notes" or group["notes"].astype(bool).any()]
        lines += [f"## {preset}", "", _md(group[cols]), "", "Tolerances:", ""]
        lines += [f"* {reason}" for reason in dict.fromkeys(group["reason"])] + [""]
        records = [r for r in dict.fromkeys(group["record"]) if isinstance(r, str)]
        if records:
            lines += ["Records: " + ", ".join(f"`{r}`" for r in records), ""]
    lines += [
        "## Published accuracy numbers without a preset",
        "",
        f"{len(missing)} published accuracy numbers are not mapped (different dataset, frame "
        "selection or metric definition, or settings not stated; the reasons for the closest "
        "cases head `avggt_bench/resources/expected_results.csv`).",
        "",
        _md(missing) if not missing.empty else "(none)",
        "",
    ]
    return "\n".join(lines)


def write(ours: pd.DataFrame, out_dir: Path) -> tuple[dict[str, Path], pd.DataFrame]:
    """`expected_results.md` and `.csv` in `out_dir`; returns their paths and the table."""
    exps = load_expectations()
    table = comparison(ours, exps)
    missing = unmapped(exps)
    paths = {
        "expected_md": out_dir / "expected_results.md",
        "expected_csv": out_dir / "expected_results.csv",
    }
    table.to_csv(paths["expected_csv"], index=False)
    paths["expected_md"].write_text(markdown(table, missing))
    return paths, table
