"""Plots people would rather look at than read: latency, speedup and peak memory against the
number of views (log scale), and fidelity against speedup. One figure per device and model."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import pandas as pd

log = logging.getLogger(__name__)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in str(text).lower()).strip("-")[:60]


def _by_variant(df: pd.DataFrame):
    """(variant, its rows by view count): one point per view count (the last record)."""
    for name, group in df.groupby("attention", sort=True):
        group = group.drop_duplicates("num_views", keep="last")
        yield name, group.sort_values("num_views")


def _colours(names) -> dict[str, str]:
    """The same colour for a variant in every panel."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {name: cycle[i % len(cycle)] for i, name in enumerate(sorted(set(names)))}


def _log_axes(ax, x: bool = True, y: bool = False) -> None:
    """Log scales only where the axis holds positive data (an empty panel stays linear)."""
    has = [line.get_xydata() for line in ax.get_lines()] + [c.get_offsets() for c in ax.collections]
    points = [p for arr in has for p in arr]
    if x and any(p[0] > 0 for p in points):
        ax.set_xscale("log")
    if y and any(p[1] > 0 for p in points):
        ax.set_yscale("log")


def plot_group(df: pd.DataFrame, device: str, model: str, out_dir: Path) -> list[Path]:
    """Four panels for one (device, model): latency, speedup, memory, fidelity vs speedup."""
    ok = df[df["status"] == "ok"]
    if ok.empty:
        return []
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    weights = ", ".join(sorted(ok["weights"].dropna().astype(str).unique()))
    fig.suptitle(f"{model} on {device} (weights: {weights})", fontsize=11)
    colour = _colours(ok["attention"].dropna())
    ax = axes[0]
    for name, g in _by_variant(ok):
        ax.plot(g["num_views"], g["forward_median_s"], marker="o", label=name, color=colour[name])
    ax.set(xlabel="views", ylabel="forward median (s)", title="latency")
    _log_axes(ax, y=True)
    ax = axes[1]
    for name, g in _by_variant(ok[ok["is_dense"] == False]):  # noqa: E712
        ax.plot(g["num_views"], g["speedup"], marker="o", label=name, color=colour[name])
        ax.plot(g["num_views"], g["predicted_speedup"], ls="--", color=colour[name], alpha=0.6)
    _log_axes(ax)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set(
        xlabel="views",
        ylabel="speedup over the dense parent",
        title="speedup (dashed: cost model)",
    )
    ax = axes[2]
    for name, g in _by_variant(ok):
        ax.plot(g["num_views"], g["peak_memory_gb"], marker="o", label=name, color=colour[name])
    kinds = ", ".join(sorted(ok["memory_kind"].dropna().unique()))
    _log_axes(ax, y=True)
    ax.set(
        xlabel="views",
        ylabel=f"peak memory (GB, {kinds})",
        title="peak memory",
    )
    ax = axes[3]
    fid = "fid_pose_auc@30"
    if fid in ok:
        for name, g in _by_variant(ok[ok[fid].notna()]):
            ax.scatter(g["speedup"], g[fid], label=name, color=colour[name])
            for _, row in g.iterrows():
                ax.annotate(str(row["num_views"]), (row["speedup"], row[fid]), fontsize=7)
    ax.set(
        xlabel="speedup over the dense parent",
        ylabel="pose AUC@30 vs dense (%)",
        title="fidelity vs speedup (labels: views)",
    )
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    handles, _labels = axes[1].get_legend_handles_labels()
    if handles:
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{_slug(device)}_{_slug(model)}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_all(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    paths: list[Path] = []
    if df.empty:
        return paths
    for (device, model), group in df.groupby(["device", "model"], sort=True):
        try:
            paths += plot_group(group, device, model, out_dir)
        except Exception as exc:  # a figure must never cost the tables
            log.warning("no plot for %s on %s: %s", model, device, exc)
            plt.close("all")
    return paths
