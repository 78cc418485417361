"""Records -> one long pandas table (a row per record), speedups and summary tables.

Every file found is accounted for: records that cannot be used (half-written, another schema,
not a record) are listed in the ingest notes with the reason, never dropped silently.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from avggt_bench.records import SCHEMA_VERSION

# schema version -> function upgrading a record dict to the current schema (none needed yet)
CONVERTERS: dict[int, Any] = {}

log = logging.getLogger(__name__)

PARENT_KEY = [
    "device",
    "model",
    "dataset",
    "image",
    "num_views",
    "precision",
    "weights",
    "memory_lean",
]

SUMMARY_COLUMNS = {
    "device": "device",
    "model": "model",
    "attention": "attention",
    "weights": "weights",
    "precision": "precision",
    "num_views": "views",
    "image": "input (WxH)",
    "tokens": "tokens/frame",
    "status": "status",
    "forward_median_s": "forward median (s)",
    "forward_spread_s": "spread (s)",
    "repeats": "repeats",
    "peak_memory_gb": "peak mem (GB)",
    "memory_kind": "memory measured",
    "tmacs": "MACs (T)",
    "global_attention_share": "global-attn MAC share",
    "achieved_gmacs": "achieved GMAC/s",
    "speedup": "speedup (measured)",
    "predicted_speedup": "speedup (cost model)",
    "speedup_efficiency": "measured / predicted",
    "sga_overhead_ratio": "SGA layer / kernel",
    "sparsity": "block sparsity",
    "keep_ratio": "kept tokens (merge)",
    "bs_kernel_dense_vs_sdpa": "gather kernel dense / SDPA",
    "fid_pose_auc@30": "fidelity AUC@30",
    "fid_depth_rel_diff_median": "fidelity depth rel diff",
}


def find_records(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_file() and path.suffix == ".json":
            out.append(path)
        elif path.is_dir():
            out.extend(p for p in sorted(path.rglob("*.json")) if not p.name.startswith("."))
    return out


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
    """One row of the long table from one record."""
    job, prov = rec.get("job", {}), rec.get("provenance", {})
    fwd = rec.get("timings", {}).get("forward", {})
    cost = rec.get("cost", {})
    comps = cost.get("components", {})
    macs = cost.get("macs")
    inp = rec.get("input", {})
    hw = inp.get("image_hw")
    row = {
        "run_id": rec.get("run_id"),
        "status": rec.get("status"),
        "message": (rec.get("message") or "").splitlines()[0] if rec.get("message") else "",
        "device": prov.get("device_name", job.get("device")),
        "device_slug": job.get("device"),
        "model": job.get("model"),
        "attention": _variant(job.get("attention"), rec.get("model", {})),
        "dataset": job.get("dataset"),
        "num_views": job.get("num_views"),
        "precision": job.get("precision"),
        "weights": rec.get("model", {}).get("weights"),
        "image": f"{hw[1]}x{hw[0]}" if hw else None,
        "tokens": inp.get("tokens_per_frame"),
        "forward_median_s": fwd.get("median_s"),
        "forward_spread_s": fwd.get("spread_s"),
        "repeats": len(fwd.get("times_s", [])) or None,
        "peak_memory_gb": rec.get("memory", {}).get("peak_gb"),
        "memory_kind": rec.get("memory", {}).get("kind"),
        "tmacs": macs / 1e12 if macs else None,
        "global_attention_share": comps.get("global_attention", 0) / macs if macs else None,
        "achieved_gmacs": (macs / fwd["median_s"] / 1e9) if macs and fwd.get("median_s") else None,
        "is_dense": rec.get("model", {}).get(
            "is_dense", all(r == "global" for r in rec.get("model", {}).get("routes", ["?"]))
        ),
        "memory_lean": rec.get("model", {}).get("memory_lean"),
        "macs": macs,
        "sga_overhead_ratio": rec.get("timings", {}).get("sga_layer", {}).get("overhead_ratio"),
        "sparsity": _mean_route_value(rec, "sparsity"),
        "keep_ratio": _mean_route_value(rec, "keep_ratio"),
        "bs_kernel_dense_vs_sdpa": _ratio(
            rec.get("timings", {}).get("block_sparse_layer", {}),
            "dense_same_kernel_s",
            "dense_sdpa_s",
        ),
        **{f"fid_{k}": v for k, v in rec.get("metrics", {}).get("fidelity", {}).items()},
        **_accuracy_columns(rec.get("metrics", {})),
        "git_sha": (prov.get("git_sha") or "")[:10],
        "finished_at": rec.get("finished_at"),
    }
    return row


def _accuracy_columns(metrics: dict[str, Any]) -> dict[str, Any]:
    """A protocol run's aggregated metrics (`acc_*`), counts, the meaningful flag, and the same
    metrics against the dense parent (`fidp_*`)."""
    acc = metrics.get("accuracy")
    if not isinstance(acc, dict):
        return {}
    out = {
        "acc_meaningful": acc.get("meaningful"),
        "acc_scenes": f"{acc.get('n_ok')}/{acc.get('n_scenes')}",
        "acc_skipped": acc.get("n_skipped"),
        "acc_failed": acc.get("n_failed"),
        **{f"acc_{k}": v for k, v in acc.get("metrics", {}).items()},
    }
    fid = metrics.get("fidelity_protocol") or {}
    out.update({f"fidp_{k}": v for k, v in fid.get("metrics", {}).items()})
    return out


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Protocol runs: one row per run with its counts and aggregated metrics; runs whose
    accuracy is not meaningful (random weights, the ground-truth oracle) say so."""
    if "acc_meaningful" not in df:
        return pd.DataFrame()
    runs = df[df["acc_meaningful"].notna()]
    if runs.empty:
        return pd.DataFrame()
    ident = ["dataset", "model", "attention", "num_views", "weights", "status"]
    metric_cols = [c for c in runs.columns if c.startswith(("acc_", "fidp_"))]
    metric_cols = [c for c in metric_cols if runs[c].notna().any()]
    table = runs[[*ident, *metric_cols]].copy()
    table["num_views"] = [("protocol" if pd.isna(v) else int(v)) for v in table["num_views"]]
    table["acc_meaningful"] = table["acc_meaningful"].map(
        {True: "yes", False: "NO (random weights or oracle)"}
    )
    return table.rename(columns={"acc_meaningful": "meaningful"})


def _variant(attention: str | None, model: dict[str, Any]) -> str | None:
    """Name dense VGGT as the literature does: VGGT* keeps only the head layers."""
    if model.get("weights") == "ground_truth":
        return "n/a (ground-truth oracle)"
    if attention != "dense" or model.get("family") != "vggt":
        return attention
    return "dense (VGGT*)" if model.get("memory_lean", True) else "dense (all layers)"


def _mean_route_value(rec: dict[str, Any], key: str) -> float | None:
    """Layer-weighted mean of a per-route fact (realised sparsity, kept-token ratio)."""
    total, count = 0.0, 0
    for row in rec.get("model", {}).get("route_layers", []):
        if row.get(key) is None:
            continue
        first, _, last = str(row["layers"]).partition("-")
        n = int(last or first) - int(first) + 1
        total += row[key] * n
        count += n
    return total / count if count else None


def _ratio(d: dict[str, Any], num: str, den: str) -> float | None:
    return d[num] / d[den] if d.get(num) and d.get(den) else None


def load_table(paths: Iterable[Path]) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """The long table of every usable record under `paths`, and a note for every file that was
    converted or ignored (with the reason)."""
    rows, notes = [], []
    for path in find_records(paths):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            notes.append(_note(path, "ignored", f"not readable JSON (half-written?): {exc}"))
            continue
        if not isinstance(rec, dict) or "run_id" not in rec or "job" not in rec:
            notes.append(_note(path, "ignored", "not a job record"))
            continue
        version = rec.get("schema_version")
        if version != SCHEMA_VERSION:
            if version in CONVERTERS:
                rec = CONVERTERS[version](rec)
                notes.append(_note(path, "converted", f"schema {version} -> {SCHEMA_VERSION}"))
            else:
                why = "newer" if isinstance(version, int) and version > SCHEMA_VERSION else "older"
                notes.append(
                    _note(path, "ignored", f"schema version {version} ({why}, no converter)")
                )
                continue
        rows.append({**flatten(rec), "path": str(path)})
    df = pd.DataFrame(rows)
    if not df.empty:
        df = _latest_per_configuration(df, notes)
        df["_order"] = ~df["is_dense"].fillna(False).astype(bool)  # dense parent first
        df = df.sort_values(["device", "model", "num_views", "_order", "attention"], kind="stable")
        df = df.drop(columns="_order")
        devices = sorted(df["device"].dropna().unique())
        if len(devices) > 1:
            notes.append(
                _note(
                    Path("."),
                    "separated",
                    f"{len(devices)} devices ({', '.join(devices)}): tables and speedups are "
                    "per device; a speedup never pairs records of different devices",
                )
            )
    return df.reset_index(drop=True), notes


SAME_RUN = (
    "device",
    "model",
    "attention",
    "dataset",
    "num_views",
    "precision",
    "weights",
    "image",
    "repeats",
)
"""Records agreeing on these measured the same thing: the report keeps the newest."""


def _latest_per_configuration(df: pd.DataFrame, notes: list[dict[str, str]]) -> pd.DataFrame:
    """One row per measured configuration (the newest record); older ones are noted, not lost."""
    key = [c for c in SAME_RUN if c in df]
    ordered = df.sort_values("finished_at", kind="stable", na_position="first")
    dup = ordered.duplicated(key, keep="last") & (ordered["status"] == "ok")
    for path in ordered.loc[dup, "path"]:
        notes.append(
            _note(Path(path), "superseded", "a newer record measured the same configuration")
        )
    return ordered[~dup]


def _note(path: Path, action: str, reason: str) -> dict[str, str]:
    log.warning("%s %s: %s", action, path, reason)
    return {"path": str(path), "action": action, "reason": reason}


def add_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """Speedup of each ok record over its dense parent (same device, model, input, views,
    precision, weights) measured in the same results, beside the cost model's MAC ratio."""
    df = df.copy()
    for col in ("speedup", "predicted_speedup", "speedup_efficiency"):
        df[col] = float("nan")
    if df.empty or "is_dense" not in df:
        return df
    ok = df["status"] == "ok"
    parents = df[ok & (df["is_dense"] == True)]  # noqa: E712 (pandas column comparison)
    parents = parents.drop_duplicates(PARENT_KEY, keep="last").set_index(PARENT_KEY)
    for idx, row in df[ok].iterrows():
        key = tuple(row[k] for k in PARENT_KEY)
        if key not in parents.index:
            continue
        parent = parents.loc[key]
        df.loc[idx, "speedup"] = parent["forward_median_s"] / row["forward_median_s"]
        df.loc[idx, "predicted_speedup"] = parent["macs"] / row["macs"]
    df["speedup_efficiency"] = df["speedup"] / df["predicted_speedup"]
    return df


def speedup_table(df: pd.DataFrame) -> pd.DataFrame:
    """Views x variant: 'measured x (predicted x)' for the accelerated variants."""
    fast = df[(df["status"] == "ok") & (df["is_dense"] == False) & df["speedup"].notna()]  # noqa: E712
    if fast.empty:
        return pd.DataFrame()
    cells = fast.assign(
        cell=[
            f"{s:.2f}x ({p:.2f}x, {100 * s / p:.0f}%)"
            for s, p in zip(fast["speedup"], fast["predicted_speedup"])
        ]
    )
    table = cells.pivot_table(
        index=["device", "model", "num_views"], columns="attention", values="cell", aggfunc="last"
    )
    return table.reset_index().fillna("")


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in SUMMARY_COLUMNS if c in df.columns]
    out = df[cols].rename(columns=SUMMARY_COLUMNS)
    return out
