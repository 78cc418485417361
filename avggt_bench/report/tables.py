"""The long table -> the tables people read: a compact summary, the speedup pivot, accuracy per
protocol and the jobs by status. The full table (every column) goes to the CSV."""

from __future__ import annotations

import pandas as pd

from avggt_bench.report.ingest import find_records, load_table
from avggt_bench.report.rows import ROUTE_COLUMN, _variant, flatten
from avggt_bench.report.speedups import add_speedups, speedup_cell

__all__ = [
    "_variant",
    "accuracy_table",
    "add_speedups",
    "compact_table",
    "find_records",
    "flatten",
    "load_table",
    "speedup_table",
    "status_table",
    "summary_table",
]

SUMMARY_COLUMNS = {
    "source": "source",
    "machine": "machine",
    "device": "device",
    "model": "model",
    "variant": "variant",
    "weights": "weights",
    "precision": "precision",
    "num_views": "views",
    "image": "input (WxH)",
    "tokens": "tokens/frame",
    "status": "status",
    "forward_median_s": "forward median (s)",
    "forward_total_s": "forward total (s, scenes ok)",
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
    ROUTE_COLUMN: "",  # the columns the routes name themselves, in order of appearance
    "fid_pose_auc@30": "fidelity AUC@30",
    "fid_depth_rel_diff_median": "fidelity depth rel diff",
    "time_vs_reference": "time / reference",
    "flags": "flags",
}


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every reported column under its reader's name (the LaTeX table); a route's own columns
    (`route: <label>`) appear under their label."""
    cols: list[str] = []
    for key in SUMMARY_COLUMNS:
        if key == ROUTE_COLUMN:
            cols += [c for c in df.columns if str(c).startswith(ROUTE_COLUMN)]
        elif key in df.columns:
            cols.append(key)
    names = {c: SUMMARY_COLUMNS.get(c) or c.removeprefix(ROUTE_COLUMN) for c in cols}
    return df[cols].rename(columns=names)


def _time_cell(row: pd.Series) -> str:
    if row.get("protocol") is True:
        total = row.get("forward_total_s")
        if total is None or pd.isna(total):
            return ""
        ok, n = int(row.get("scenes_ok") or 0), int(row.get("scenes_total") or 0)
        return f"{total:.3g} (sum of {ok}/{n} scenes)"
    median = row.get("forward_median_s")
    if median is None or pd.isna(median):
        return ""
    return f"{median:.3g}"


def _speedup_text(row: pd.Series) -> str:
    s = row.get("speedup")
    if s is None or pd.isna(s) or row.get("is_dense") is True:
        return ""
    cell = speedup_cell(s, row.get("predicted_speedup"))
    scenes = row.get("speedup_scenes")
    return f"{cell} over {scenes} scenes" if scenes else cell


def compact_table(df: pd.DataFrame) -> pd.DataFrame:
    """Model, variant, views, time, speedup, memory, fidelity (and flags): what summary.md
    shows; the CSV holds every column."""
    out = pd.DataFrame(index=df.index)
    if "source" in df and df["source"].nunique() > 1:
        out["source"] = df["source"]
    out["model"] = df["model"]
    out["variant"] = df["variant"] if "variant" in df else df["attention"]
    out["views"] = [("protocol" if pd.isna(v) else str(int(v))) for v in df["num_views"]]
    if (df["status"] != "ok").any():
        out["status"] = df["status"]
    out["time (s)"] = [_time_cell(r) for _, r in df.iterrows()]
    spread = df["spread_share"] if "spread_share" in df else [None] * len(df)
    out["spread"] = ["" if v is None or pd.isna(v) else f"{v:.0%}" for v in spread]
    out["speedup (cost model, share)"] = [_speedup_text(r) for _, r in df.iterrows()]
    if "time_vs_reference" in df and df["time_vs_reference"].notna().any():
        out["time / reference"] = [
            "" if pd.isna(v) else f"{v:.2f}x" for v in df["time_vs_reference"]
        ]
    out["memory (GB)"] = [
        "" if v is None or pd.isna(v) else f"{v:.2f}" for v in df["peak_memory_gb"]
    ]
    if "fid_pose_auc@30" in df and df["fid_pose_auc@30"].notna().any():
        out["fidelity AUC@30"] = [
            "" if v is None or pd.isna(v) else f"{v:.1f}" for v in df["fid_pose_auc@30"]
        ]
    if "flags" in df and (df["flags"] != "").any():
        out["flags"] = df["flags"]
    return out.reset_index(drop=True)


def speedup_table(df: pd.DataFrame) -> pd.DataFrame:
    """Views x variant: 'measured x (predicted x, share)' for the accelerated variants."""
    if "speedup" not in df:
        return pd.DataFrame()
    fast = df[df["status"].isin(("ok", "partial")) & (df["is_dense"] == False)]  # noqa: E712
    fast = fast[fast["speedup"].notna()]
    if fast.empty:
        return pd.DataFrame()
    cells = fast.assign(
        cell=[
            speedup_cell(s, p) + ("" if not sc else f" over {sc} scenes")
            for s, p, sc in zip(
                fast["speedup"],
                fast["predicted_speedup"],
                fast.get("speedup_scenes", pd.Series([None] * len(fast), index=fast.index)),
            )
        ]
    )
    machine = "machine" if "machine" in df else "device"
    index = [c for c in ("source", machine, "model", "num_views") if c in df]
    if "source" in index and fast["source"].nunique() < 2:
        index.remove("source")
    column = "variant" if "variant" in df else "attention"
    table = cells.pivot_table(index=index, columns=column, values="cell", aggfunc="last")
    return table.reset_index().fillna("")


def status_table(df: pd.DataFrame) -> pd.DataFrame:
    """Every job that did not finish ok (partial, error, oom, skipped, crashed, running), with
    its message: a failed job is listed, never dropped."""
    bad = df[df["status"] != "ok"]
    if bad.empty:
        return pd.DataFrame()
    cols = [
        c
        for c in ("source", "model", "variant", "num_views", "status", "exit_code")
        if c in bad and bad[c].notna().any() and (c != "source" or df[c].nunique() > 1)
    ]
    out = bad[cols].copy()
    if "scenes_ok" in bad and bad["scenes_ok"].notna().any():
        out["scenes ok"] = [
            "" if pd.isna(n) else f"{int(n)}/{int(t)}"
            for n, t in zip(bad["scenes_ok"], bad["scenes_total"])
        ]
    out["message"] = [str(m)[:120] for m in bad["message"].fillna("")]
    return out.reset_index(drop=True)


def status_counts(df: pd.DataFrame) -> str:
    """'40 ok, 1 partial, 2 crashed' in a fixed order (every status the records hold)."""
    order = ["ok", "partial", "error", "oom", "skipped", "crashed", "running"]
    counts = df["status"].fillna("unknown").value_counts()
    names = [s for s in order if s in counts] + [s for s in counts.index if s not in order]
    return ", ".join(f"{counts[s]} {s}" for s in names)


def accuracy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Protocol runs: one row per run with its counts and aggregated metrics; runs whose
    accuracy is not meaningful (random weights, the ground-truth oracle) say so."""
    if "acc_meaningful" not in df:
        return pd.DataFrame()
    runs = df[df["acc_meaningful"].notna()]
    if runs.empty:
        return pd.DataFrame()
    variant = "variant" if "variant" in df else "attention"
    ident = ["dataset", "model", variant, "num_views", "weights", "status"]
    metric_cols = [c for c in runs.columns if c.startswith(("acc_", "fidp_"))]
    metric_cols = [c for c in metric_cols if runs[c].notna().any()]
    table = runs[[*ident, *metric_cols]].copy()
    table["num_views"] = [("protocol" if pd.isna(v) else int(v)) for v in table["num_views"]]
    table["acc_meaningful"] = table["acc_meaningful"].map(
        {True: "yes", False: "NO (random weights or oracle)"}
    )
    return table.rename(columns={"acc_meaningful": "meaningful"})
