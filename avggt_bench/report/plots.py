"""Plots people would rather look at than read: latency, speedup and peak memory against the
number of views, and fidelity against speedup, in a 2x2 grid per source, machine and model.

Made to be read without help at the committed size: view-count axes are log scaled with a tick
at each measured view count (plain numbers), value axes show plain numbers (1-2-5 ticks when
log scaled), error bars span the recorded repeats (fastest to slowest), every text is at least
10 px high at `DPI`, and a panel whose numbers mean nothing under random weights (fidelity)
says so on the panel itself.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator

log = logging.getLogger(__name__)

DPI = 100
FIGSIZE = (12.0, 8.5)  # inches of the panels (1200 x 850 px at DPI); the legend adds rows
FONT = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10}
NOTE_PT = 9  # view-count labels beside the fidelity points: 12.5 px at DPI
RANDOM_CAVEAT = "random weights: these fidelities are not meaningful"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in str(text).lower()).strip("-")[:60]


def _plain(value: float, _pos: Any = None) -> str:
    return f"{value:g}"


def _by_variant(df: pd.DataFrame):
    """(variant, its rows by view count): one point per view count (the last record)."""
    column = "variant" if "variant" in df else "attention"
    for name, group in df.groupby(column, sort=True):
        group = group.drop_duplicates("num_views", keep="last")
        yield name, group.sort_values("num_views")


def _colours(names) -> dict[str, str]:
    """The same colour for a variant in every panel."""
    names = sorted(set(names))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(names) > len(cycle):
        cycle = [matplotlib.colors.to_hex(c) for c in plt.get_cmap("tab20").colors]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(names)}


def view_ticks(views) -> list[float]:
    """The measured view counts, thinned so that neighbours on a log axis stay >= 25 % apart."""
    kept: list[float] = []
    for v in sorted({float(v) for v in views if v and v > 0}):
        if not kept or v / kept[-1] >= 1.25:
            kept.append(v)
    return kept


def _views_axis(ax, views) -> None:
    ticks = view_ticks(views)
    if not ticks:
        return
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(ticks[0] / 1.3, ticks[-1] * 1.3)


def _value_axis(ax, values) -> None:
    """Log scale with plain 1-2-5 ticks over a decade or more, else linear plain numbers."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v) and v > 0]
    if vals and max(vals) / min(vals) >= 10:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))
        ax.yaxis.set_minor_locator(NullLocator())
    else:
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)


def _err(mid: pd.Series, lo: pd.Series, hi: pd.Series) -> np.ndarray:
    """Asymmetric error bars [mid - lo, hi - mid]; no bar where the range is not recorded."""
    m = mid.to_numpy(float)
    low = np.nan_to_num(m - pd.to_numeric(lo, errors="coerce").to_numpy(float), nan=0.0)
    high = np.nan_to_num(pd.to_numeric(hi, errors="coerce").to_numpy(float) - m, nan=0.0)
    return np.vstack([np.clip(low, 0, None), np.clip(high, 0, None)])


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series(np.nan, index=df.index)


def figure(df: pd.DataFrame, title: str) -> Figure | None:
    """The 2x2 figure of one group of rows (single-scene jobs that finished ok)."""
    ok = df[(df["status"] == "ok") & df["forward_median_s"].notna()]
    if ok.empty:
        return None
    names = ok["variant"] if "variant" in ok else ok["attention"]
    labels = sorted(set(names.dropna()))
    widest = max((len(str(label)) for label in labels), default=0)
    ncol = max(1, min(len(labels), 3 if widest <= 32 else 2 if widest <= 55 else 1))
    legend_in = 0.3 * math.ceil(len(labels) / ncol) + 0.2  # inches below the panels
    with plt.rc_context(FONT):
        fig, grid = plt.subplots(2, 2, figsize=(FIGSIZE[0], FIGSIZE[1] + legend_in), dpi=DPI)
        colour = _colours(labels)
        weights = ", ".join(sorted(ok["weights"].dropna().astype(str).unique()))
        fig.suptitle(f"{title} (weights: {weights})", fontsize=13)
        _latency(grid[0, 0], ok, colour)
        _speedup(grid[0, 1], ok, colour)
        _memory(grid[1, 0], ok, colour)
        _fidelity(grid[1, 1], ok, colour, random=(ok["weights"] == "random").any())
        for ax in grid.flat:
            ax.grid(True, which="major", alpha=0.3)
        handles, names_ = grid[0, 0].get_legend_handles_labels()
        fig.legend(handles, names_, loc="lower center", ncol=ncol, frameon=False)
        fig.tight_layout(rect=(0, legend_in / (FIGSIZE[1] + legend_in), 1, 0.97))
    return fig


def _latency(ax, ok: pd.DataFrame, colour: dict[str, str]) -> None:
    for name, g in _by_variant(ok):
        yerr = _err(g["forward_median_s"], _col(g, "forward_min_s"), _col(g, "forward_max_s"))
        ax.errorbar(
            g["num_views"], g["forward_median_s"], yerr=yerr, marker="o", capsize=3,
            label=name, color=colour[name],
        )  # fmt: skip
    _views_axis(ax, ok["num_views"])
    _value_axis(ax, ok["forward_median_s"])
    ax.set(xlabel="views", ylabel="forward median (s)", title="latency (bars: fastest-slowest)")


def _speedup(ax, ok: pd.DataFrame, colour: dict[str, str]) -> None:
    fast = ok[(ok["is_dense"] == False) & _col(ok, "speedup").notna()]  # noqa: E712
    for name, g in _by_variant(fast):
        yerr = _err(g["speedup"], _col(g, "speedup_lo"), _col(g, "speedup_hi"))
        ax.errorbar(g["num_views"], g["speedup"], yerr=yerr, marker="o", capsize=3,
                    color=colour[name])  # fmt: skip
        ax.plot(g["num_views"], g["predicted_speedup"], ls="--", color=colour[name], alpha=0.6)
    ax.axhline(1.0, color="grey", lw=0.8)
    _views_axis(ax, ok["num_views"])
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.set(xlabel="views", ylabel="speedup over the dense parent")
    ax.set_title("speedup (dashed: cost model)")
    if fast.empty:
        ax.text(0.5, 0.5, "no accelerated variant\nwith a dense parent", ha="center",
                va="center", transform=ax.transAxes)  # fmt: skip


def _memory(ax, ok: pd.DataFrame, colour: dict[str, str]) -> None:
    for name, g in _by_variant(ok):
        ax.plot(g["num_views"], g["peak_memory_gb"], marker="o", color=colour[name])
    kinds = ", ".join(sorted(ok["memory_kind"].dropna().astype(str).unique())) or "peak"
    _views_axis(ax, ok["num_views"])
    _value_axis(ax, ok["peak_memory_gb"])
    ax.set(xlabel="views", ylabel=f"peak memory (GB, {kinds})", title="peak memory")


def _fidelity(ax, ok: pd.DataFrame, colour: dict[str, str], random: bool) -> None:
    fid = "fid_pose_auc@30"
    rows = ok[_col(ok, fid).notna() & _col(ok, "speedup").notna()]
    for name, g in _by_variant(rows):
        ax.scatter(g["speedup"], g[fid], color=colour[name], zorder=3)
        for _, row in g.iterrows():
            ax.annotate(
                f"{row['num_views']:g}", (row["speedup"], row[fid]), fontsize=NOTE_PT,
                xytext=(4, 3), textcoords="offset points", zorder=3,
            )  # fmt: skip
    ax.set(
        xlabel="speedup over the dense parent",
        ylabel="pose AUC@30 vs dense (%)",
        title="fidelity vs speedup (labels: views)",
    )
    if rows.empty:
        ax.text(0.5, 0.5, "no fidelity records", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
    if random:  # between the title and the plot area, where it cannot hide a point
        ax.set_title(ax.get_title(), pad=22)
        ax.text(
            0.5, 1.01, RANDOM_CAVEAT, ha="center", va="bottom", transform=ax.transAxes,
            fontsize=11, color="darkred", weight="bold",
        )  # fmt: skip


def plot_group(df: pd.DataFrame, title: str, path: Path) -> list[Path]:
    fig = figure(df, title)
    if fig is None:
        return []
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return [path]


def plot_all(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One figure per (source, machine, model) with finished single-scene rows."""
    paths: list[Path] = []
    if df.empty:
        return paths
    keys = [k for k in ("source", "machine", "model") if k in df]
    for key, group in df.groupby(keys, sort=True):
        parts = dict(zip(keys, key))
        source = parts.pop("source", "run")
        title = f"{parts.get('model')} on {parts.get('machine')}"
        name = f"{_slug(parts.get('machine'))}_{_slug(parts.get('model'))}"
        if source != "run":
            title, name = f"{title} ({source})", f"{source}_{name}"
        try:
            paths += plot_group(group, title, out_dir / f"{name}.png")
        except (ValueError, TypeError, KeyError) as exc:  # a figure must never cost the tables
            log.warning("no plot for %s: %s: %s", title, type(exc).__name__, exc)
            plt.close("all")
    return paths
