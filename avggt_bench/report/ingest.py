"""Record files -> the long table: one row per measured configuration.

Every file found is accounted for: records that cannot be used (half-written, another schema,
not a record) and older measurements of the exact same configuration (same machine and config
hash) are listed in the ingest notes with the reason, never dropped silently. Rows are
configurations: records that share a model and attention preset but differ in any other setting
(σ of an ablation, the number of repeats, the commit that measured them) stay separate rows,
labelled by what differs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from avggt_bench.records import SCHEMA_VERSION
from avggt_bench.report.rows import flatten

READABLE = range(1, SCHEMA_VERSION + 1)

# Schema 1 stored two layer microbenchmarks and two reported per-layer facts under keys named for
# their methods. This is the one place that knows them: old timings key -> (numerator,
# denominator or None, report column), and per-layer fact -> report column. Schema 2 stores both
# generically (`timings.layer_benchmarks[route].columns`, `model.route_layers[i].columns`).
V1_BENCHMARKS = {
    "sga_layer": ("overhead_ratio", None, "SGA layer / kernel"),
    "block_sparse_layer": ("dense_same_kernel_s", "dense_sdpa_s", "gather kernel dense / SDPA"),
}
V1_FACTS = {"sparsity": "block sparsity", "keep_ratio": "kept tokens (merge)"}


def upgrade_v1(rec: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 record in the schema-2 layout (a copy; the other fields as they were)."""
    rec = json.loads(json.dumps(rec))
    timings = rec.get("timings") or {}
    benchmarks = {}
    for key, (num, den, label) in V1_BENCHMARKS.items():
        bench = timings.pop(key, None)
        if not isinstance(bench, dict):
            continue
        value = bench.get(num)
        if den is not None:
            value = value / bench[den] if value and bench.get(den) else None
        benchmarks[str(bench.get("route", key))] = {**bench, "columns": {label: value}}
    if benchmarks:
        timings["layer_benchmarks"] = benchmarks
    for row in (rec.get("model") or {}).get("route_layers") or []:
        columns = {label: row[fact] for fact, label in V1_FACTS.items() if fact in row}
        if columns:
            row["columns"] = columns
    rec["schema_version"] = SCHEMA_VERSION
    return rec


# schema version -> function upgrading a record dict to the current schema
CONVERTERS: dict[int, Any] = {1: upgrade_v1}

log = logging.getLogger(__name__)

# rows agreeing on these are variants of one preset: what else differs labels them
VARIANT_GROUP = ("source", "machine", "model", "attention", "dataset")


def find_records(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_file() and path.suffix == ".json":
            out.append(path)
        elif path.is_dir():
            out.extend(p for p in sorted(path.rglob("*.json")) if not p.name.startswith("."))
    return out


def _read(path: Path, notes: list[dict[str, str]]) -> dict[str, Any] | None:
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        notes.append(note(path, "ignored", f"not readable JSON (half-written?): {exc}"))
        return None
    if not isinstance(rec, dict) or "job" not in rec or "status" not in rec:
        notes.append(note(path, "ignored", "not a job record"))
        return None
    version = rec.get("schema_version")
    if version in CONVERTERS:
        notes.append(note(path, "converted", f"schema {version} -> {SCHEMA_VERSION}"))
        return CONVERTERS[version](rec)
    if version in READABLE:
        return rec
    why = "newer" if isinstance(version, int) and version > SCHEMA_VERSION else "older"
    notes.append(note(path, "ignored", f"schema version {version} ({why}, no converter)"))
    return None


def load_table(
    paths: Iterable[Path], reference: Iterable[Path] = ()
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """The long table of every usable record under `paths` (source `run`) and `reference`
    (source `reference`), and a note for every file converted, ignored or superseded."""
    rows, notes = [], []
    for source, folders in (("run", paths), ("reference", reference)):
        for path in find_records(folders):
            rec = _read(path, notes)
            if rec is not None:
                row = flatten(rec)
                row["run_id"] = row["run_id"] or path.stem
                rows.append({**row, "source": source, "path": str(path)})
    df = pd.DataFrame(rows)
    if df.empty:
        return df, notes
    df = _latest_per_configuration(df, notes)
    df["variant"] = variant_labels(df)
    df["source"] = pd.Categorical(df["source"], ["run", "reference"])  # a run, then its reference
    df["_order"] = ~df["is_dense"].fillna(False).astype(bool)  # dense parent first
    df["_views"] = pd.to_numeric(df["num_views"], errors="coerce")
    keys = ["machine", "model", "dataset", "_views", "_order", "variant", "source"]
    df = df.sort_values(keys, kind="stable", na_position="last").drop(columns=["_order", "_views"])
    df["source"] = df["source"].astype(str)
    machines = sorted(df["machine"].dropna().unique())
    if len(machines) > 1:
        notes.append(
            note(
                Path("."),
                "separated",
                f"{len(machines)} machines ({', '.join(machines)}): tables and speedups are "
                "per machine; a speedup never pairs records of different machines",
            )
        )
    return df.reset_index(drop=True), notes


def _latest_per_configuration(df: pd.DataFrame, notes: list[dict[str, str]]) -> pd.DataFrame:
    """The exact same configuration (machine and config hash) measured twice: the newest record
    is the row, the older ones are noted as superseded."""
    stamp = df["finished_at"].fillna(df["started_at"])
    ordered = df.assign(_stamp=stamp).sort_values("_stamp", kind="stable", na_position="first")
    key = ordered["config_hash"].fillna(ordered["path"])  # no hash: never the same
    dup = ordered.assign(_key=key).duplicated(["source", "machine", "_key"], keep="last")
    for _, row in ordered[dup].iterrows():
        notes.append(
            note(
                Path(row["path"]),
                "superseded",
                f"status {row['status']}; a newer record measured the same configuration "
                f"(config hash {str(row['config_hash'])[:10]}) on {row['machine']}",
            )
        )
    return ordered[~dup].drop(columns="_stamp")


def variant_labels(df: pd.DataFrame) -> list[str]:
    """The attention preset, followed by the settings that set this row apart from the other
    rows of the same preset (resolved-config leaves, torch/CUDA/package version, and as a last
    resort the commit and the config hash)."""
    labels = pd.Series(df["attention"].astype(str), index=df.index)
    for _, group in df.groupby(list(VARIANT_GROUP), dropna=False, sort=False):
        if group["config_hash"].nunique(dropna=False) < 2 and len(group) < 2:
            continue
        parts = _differing(group)
        for idx in group.index:
            labels[idx] = _join(labels[idx], parts[idx])
        views = pd.to_numeric(group["num_views"], errors="coerce").fillna(-1)
        for _, same in group.groupby(views, sort=False):  # still alike at the same view count
            for extra in (_commit, _hash):
                if labels[same.index].nunique() == len(same):
                    break
                for idx in same.index:
                    labels[idx] = _join(labels[idx], [extra(df.loc[idx])])
    return labels.tolist()


def _differing(group: pd.DataFrame) -> dict[Any, list[str]]:
    """Per row: `path=value` for every config leaf (present in every row) or version whose value
    is not the same across the group."""
    leaves = list(group["_leaves"])
    common = set.intersection(*(set(x) for x in leaves)) if leaves else set()
    keys = sorted(k for k in common if len({x[k] for x in leaves}) > 1)
    out = {idx: [f"{k}={json.loads(x[k])}" for k in keys] for idx, x in zip(group.index, leaves)}
    for col in ("torch", "cuda", "package_version"):
        values = group[col].dropna()
        if values.nunique() > 1:
            for idx in group.index:
                out[idx].append(f"{col} {group.loc[idx, col]}")
    return out


def _commit(row: pd.Series) -> str:
    dirty = "+dirty" if row.get("git_dirty") else ""
    return f"commit {str(row.get('git_sha') or '?')[:8]}{dirty}"


def _hash(row: pd.Series) -> str:
    return f"config {str(row.get('config_hash'))[:8]}"


def _join(label: str, parts: list[str]) -> str:
    parts = [p for p in parts if p not in label]
    if not parts:
        return label
    if label.endswith("]"):
        return f"{label[:-1]}, {', '.join(parts)}]"
    return f"{label} [{', '.join(parts)}]"


def note(path: Path, action: str, reason: str) -> dict[str, str]:
    log.warning("%s %s: %s", action, path, reason)
    return {"path": str(path), "action": action, "reason": reason}
