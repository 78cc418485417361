"""Speedups over the dense parent and times against the reference numbers.

A speedup pairs a variant with a dense record of the same source (a user's run or the reference),
machine, model, input, view count, precision and weights; among several such records the one
whose configuration differs least (then the newest) is the parent. Protocol jobs are compared
only over the scenes both sides finished (status ok in both): sums over different scene sets are
never divided.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

PARENT_KEY = (
    "source",
    "machine",
    "model",
    "dataset",
    "image",
    "num_views",
    "precision",
    "weights",
    "memory_lean",
)
PAIRED = ("ok", "partial")  # a partial protocol job still has finished scenes to compare


def paired_times(a: pd.Series, b: pd.Series) -> tuple[float, float, int, int] | None:
    """(time of a, time of b, scenes compared, scenes of either) over what both finished:
    single-scene jobs their forward medians, protocol jobs the sums of per-scene medians over the
    scenes ok in both. None when there is nothing to compare."""
    sa, sb = a.get("_scene_times"), b.get("_scene_times")
    if bool(a.get("protocol")) or bool(b.get("protocol")):
        if not isinstance(sa, dict) or not isinstance(sb, dict):
            return None
        common = sorted(set(sa) & set(sb))
        if not common:
            return None
        union = len(set(sa) | set(sb))
        return sum(sa[s] for s in common), sum(sb[s] for s in common), len(common), union
    ta, tb = a.get("forward_median_s"), b.get("forward_median_s")
    if ta is None or tb is None or pd.isna(ta) or pd.isna(tb) or tb <= 0:
        return None
    return float(ta), float(tb), 1, 1


def _differences(a: Any, b: Any) -> int:
    """How many config leaves (present in both) differ, outside the attention settings."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return 0
    keys = (set(a) & set(b)) - {k for k in set(a) | set(b) if k.startswith("attention.")}
    return sum(a[k] != b[k] for k in keys if k != "model.memory_lean")


def _pick_parent(row: pd.Series, candidates: pd.DataFrame) -> pd.Series:
    """The dense record whose configuration differs least from the row's; the newest of ties."""
    if len(candidates) == 1:
        return candidates.iloc[0]
    if "finished_at" in candidates:
        candidates = candidates.sort_values("finished_at", ascending=False, na_position="last")
    leaves = candidates["_leaves"] if "_leaves" in candidates else [None] * len(candidates)
    diffs = [_differences(row.get("_leaves"), c) for c in leaves]
    return candidates.iloc[diffs.index(min(diffs))]


def add_speedups(df: pd.DataFrame) -> pd.DataFrame:
    """Speedup of each finished record over its dense parent beside the cost model's MAC ratio,
    with the range the recorded repeats allow (slowest parent / fastest variant and back)."""
    df = df.copy()
    for col in ("speedup", "predicted_speedup", "speedup_lo", "speedup_hi"):
        df[col] = float("nan")
    df["speedup_scenes"] = None
    df["parent"] = None
    df["_parent_idx"] = None
    if df.empty or "is_dense" not in df:
        df["speedup_efficiency"] = float("nan")
        return df
    machine = "machine" if "machine" in df else "device"
    key = [machine if k == "machine" else k for k in PARENT_KEY]
    key = [k for k in key if k in df]
    done = df["status"].isin(PAIRED)
    parents = df[done & (df["is_dense"] == True)]  # noqa: E712 (pandas column comparison)
    groups: dict[tuple, list] = {}
    for idx, row in parents.iterrows():
        groups.setdefault(_key(row, key), []).append(idx)
    for idx, row in df[done].iterrows():
        found = groups.get(_key(row, key))
        group = None if found is None else df.loc[found]
        if group is None:
            continue
        parent = _pick_parent(row, group)
        times = paired_times(parent, row)
        if times is None:
            continue
        t_parent, t_row, n, union = times
        df.loc[idx, "speedup"] = t_parent / t_row
        df.at[idx, "parent"] = parent.get("run_id")
        df.at[idx, "_parent_idx"] = parent.name
        if bool(row.get("protocol")):
            df.at[idx, "speedup_scenes"] = f"{n}/{union}"
        elif _has(parent, "forward_min_s", "forward_max_s") and _has(
            row, "forward_min_s", "forward_max_s"
        ):
            df.loc[idx, "speedup_lo"] = parent["forward_min_s"] / row["forward_max_s"]
            df.loc[idx, "speedup_hi"] = parent["forward_max_s"] / row["forward_min_s"]
        if _has(parent, "macs") and _has(row, "macs") and not bool(row.get("protocol")):
            df.loc[idx, "predicted_speedup"] = parent["macs"] / row["macs"]
    df["speedup_efficiency"] = df["speedup"] / df["predicted_speedup"]
    return df


def _key(row: pd.Series, cols: list[str]) -> tuple:
    """Hashable pairing key; missing values (None, NaN) compare equal to each other."""
    return tuple(None if row[c] is None or pd.isna(row[c]) else row[c] for c in cols)


def _has(row: pd.Series, *cols: str) -> bool:
    return all(c in row and row[c] is not None and not pd.isna(row[c]) for c in cols)


def add_reference(df: pd.DataFrame) -> pd.DataFrame:
    """For each row of a user's run, the same configuration in the reference numbers (same
    model, preset, dataset, views, and every config leaf both records hold): its machine, the
    time ratio run / reference (over the scenes both finished) and the reference's speedup."""
    df = df.copy()
    df["time_vs_reference"] = float("nan")
    df["reference_speedup"] = float("nan")
    df["reference_machine"] = None
    if "source" not in df or not (df["source"] == "reference").any():
        return df
    ref = df[(df["source"] == "reference") & df["status"].isin(PAIRED)]
    same = ["model", "attention", "dataset", "num_views"]
    for idx, row in df[(df["source"] == "run") & df["status"].isin(PAIRED)].iterrows():
        cands = ref[_equal(ref, row, same)]
        cands = cands[[_same_leaves(row["_leaves"], c) for c in cands["_leaves"]]]
        if cands.empty:
            continue
        local = cands[cands["machine"] == row["machine"]]
        match = (local if not local.empty else cands).iloc[-1]
        times = paired_times(row, match)
        if times is None:
            continue
        df.loc[idx, "time_vs_reference"] = times[0] / times[1]
        df.loc[idx, "reference_speedup"] = match.get("speedup")
        df.at[idx, "reference_machine"] = match["machine"]
    return df


def _equal(ref: pd.DataFrame, row: pd.Series, cols: list[str]) -> pd.Series:
    """Columns equal or missing on both sides (pandas treats NaN != NaN)."""
    ok = pd.Series(True, index=ref.index)
    for c in cols:
        ok &= (ref[c] == row[c]) | (ref[c].isna() & pd.isna(row[c]))
    return ok


def _same_leaves(a: Any, b: Any) -> bool:
    """Every measurement-defining config leaf both records hold is equal."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    return all(a[k] == b[k] for k in set(a) & set(b) if k not in ("device",))


def speedup_cell(speedup: float, predicted: float | None) -> str:
    """'1.52x (1.57x, 96%)': measured, cost model, share realised; '1.52x' without a cost."""
    if predicted is None or pd.isna(predicted):
        return f"{speedup:.2f}x"
    return f"{speedup:.2f}x ({predicted:.2f}x, {100 * speedup / predicted:.0f}%)"
