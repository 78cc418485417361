"""Writing the analysis outputs: CSV + markdown tables and a JSON summary, all labelled with the
weights (`random` when no checkpoint was given: the numbers then describe the architecture and
the random-weight recipe, not the trained model)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd


def weights_label(checkpoint: str | None) -> str:
    """`random` without a checkpoint, else the checkpoint's name (hub id tail or file stem)."""
    if not checkpoint:
        return "random"
    text = str(checkpoint).rstrip("/")
    name = text.split("/")[-1]
    return Path(name).stem if "." in name else name


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (no external dependency), floats to 3 decimals, missing values as null."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_table(df: pd.DataFrame, stem: Path, title: str, meta: dict[str, Any]) -> list[Path]:
    """`<stem>.csv` (with `weights` and `model` columns) and `<stem>.md` (title + meta line)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = df.copy()
    out.insert(0, "weights", meta.get("weights"))
    out.insert(0, "model", meta.get("model"))
    csv, md = stem.with_suffix(".csv"), stem.with_suffix(".md")
    out.to_csv(csv, index=False)
    facts = ", ".join(f"{k}: {v}" for k, v in meta.items())
    md.write_text(f"# {title}\n\n{facts}\n\n{markdown(df)}")
    return [csv, md]


def write_summary(path: Path, summary: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return path
