"""Numbers a reader should not take at face value, flagged with their likely cause.

A row is flagged when its repeats spread by more than `SPREAD_LIMIT` of their median, when its
speedup realises a share of the cost model's MAC ratio outside `SHARE_RANGE`, or when it was
timed while other processes used more than a quarter of the machine's cores (`provenance.load`
of the record; records without it are "load unknown", never flagged). A table is marked when
its records come from different commits or from uncommitted code.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

SPREAD_LIMIT = 0.20  # (max - min) / median of the recorded repeats
SHARE_RANGE = (0.5, 1.3)  # measured speedup / cost model's MAC ratio
MIN_REPEATS = 3  # fewer repeats cannot tell a slow repeat from a slow configuration

RULES = (
    f"Flags: `spread` when (max - min) / median of the repeats exceeds {SPREAD_LIMIT:.0%}; "
    f"`N% of cost model` when the measured speedup is outside {SHARE_RANGE[0]:.0%}-"
    f"{SHARE_RANGE[1]:.0%} of the cost model's MAC ratio; `busy` when other processes used more "
    "than 25% of the cores during the timed part (records without a load measurement: unknown, "
    "not flagged)."
)


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and pd.isna(value))


def _causes(rows: list[pd.Series]) -> list[str]:
    """Likely causes of an odd timing among the rows that made it (the row and its parent)."""
    out = []
    busy = [r for r in rows if r.get("load_busy") is True]
    if busy:
        share = max((r.get("other_cpu_share") or 0.0) for r in busy)
        out.append(f"busy machine (other processes used {share:.0%} of the cores)")
    few = [int(r["repeats"]) for r in rows if _present(r.get("repeats"))]
    if few and min(few) < MIN_REPEATS:
        out.append(f"too few repeats ({min(few)}; {MIN_REPEATS} or more tell noise apart)")
    wide = [r.get("spread_share") for r in rows if _present(r.get("spread_share"))]
    if len(rows) > 1 and wide and max(wide) > SPREAD_LIMIT:
        out.append(f"a spread of {max(wide):.0%} in the repeats")
    if not out and any(r.get("load_busy") is None for r in rows):
        out.append("machine load not recorded")
    return out


def add_flags(df: pd.DataFrame) -> pd.DataFrame:
    """Columns `flags` (short names) and `flag_cause` (the likely cause, in words)."""
    df = df.copy()
    flags: list[str] = []
    causes: list[str] = []
    for _, row in df.iterrows():
        names, why = [], []
        spread = row.get("spread_share")
        if _present(spread) and spread > SPREAD_LIMIT + 1e-9:
            names.append(f"spread {spread:.0%}")
            why += _causes([row]) or ["no recorded cause (machine idle, enough repeats): rerun"]
        share = row.get("speedup_efficiency")
        if _present(share) and not SHARE_RANGE[0] <= share <= SHARE_RANGE[1]:
            names.append(f"{share:.0%} of cost model")
            parent_idx = row.get("_parent_idx")
            parent = df.loc[parent_idx] if _present(parent_idx) else None
            found = _causes([row] + ([parent] if parent is not None else []))
            why += found or ["not load or repeats: the kernels' speed differs from their MACs"]
        if row.get("load_busy") is True and not names:
            share_cpu = row.get("other_cpu_share")
            names.append("busy")
            why.append(
                f"other processes used {share_cpu:.0%} of the cores" if _present(share_cpu) else ""
            )
        flags.append(", ".join(names))
        causes.append("; ".join(dict.fromkeys(w for w in why if w)))
    df["flags"] = flags
    df["flag_cause"] = causes
    return df


def provenance_notes(df: pd.DataFrame) -> list[str]:
    """Table-level warnings: records of different commits or of uncommitted code, and how many
    rows were timed on a busy machine or with unknown load."""
    out = []
    shas = sorted(df["git_sha"].dropna().unique()) if "git_sha" in df else []
    if len(shas) > 1:
        out.append(
            f"**Mixed commits:** this table holds records of {len(shas)} commits "
            f"({', '.join(s[:8] for s in shas)}); compare rows of one commit where it matters."
        )
    if "git_dirty" in df and (df["git_dirty"] == True).any():  # noqa: E712
        n = int((df["git_dirty"] == True).sum())  # noqa: E712
        out.append(f"**Uncommitted code:** {n} record(s) were measured with local changes.")
    if "load_busy" in df:
        busy = int((df["load_busy"] == True).sum())  # noqa: E712
        unknown = int(df["load_busy"].isna().sum())
        if busy:
            out.append(f"**Busy machine:** {busy} record(s) were timed while other processes ran.")
        if unknown:
            out.append(f"Machine load unknown for {unknown} record(s) (not recorded).")
    return out
