"""Figures of the layer-role analysis (matplotlib, Agg): pair-class profile across layers, the
profiler's stacked bars per view count, and the rotation probe. Titles carry the weights label."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from avggt_bench.analysis.pairs import PRIMARY
from avggt_bench.analysis.profiler import CATEGORIES

CLASS_COLOURS = {
    "self": "#1f77b4",
    "special": "#9467bd",
    "same_position": "#2ca02c",
    "gt_corr": "#17becf",
    "same_row": "#ff7f0e",
    "same_frame": "#8c564b",
    "other": "#c7c7c7",
}
CATEGORY_COLOURS = {
    "patch_embed": "#8c564b",
    "frame_attn": "#1f77b4",
    "global_attn": "#d62728",
    "mlp": "#2ca02c",
    "heads": "#9467bd",
    "unattributed": "#c7c7c7",
}


def _ticks(ax, labels: list[str]) -> list[int]:
    """Numeric bar positions with text tick labels (no categorical-axis guessing)."""
    xs = list(range(len(labels)))
    ax.set_xticks(xs, labels)
    return xs


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_pair_profile(summary: pd.DataFrame, path: Path, title: str) -> Path:
    """Stacked primary-class fractions of the top-k pairs per layer (top) and normalised entropy
    and mean peak probability per layer (bottom)."""
    fig, (ax, ax2) = plt.subplots(
        2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    layers = summary["layer"].astype(str).tolist()
    xs = _ticks(ax2, layers)
    bottom = [0.0] * len(layers)
    for name in PRIMARY:
        col = f"frac_{name}"
        if col not in summary or summary[col].isna().all():
            continue
        vals = summary[col].fillna(0.0).tolist()
        ax.bar(xs, vals, bottom=bottom, label=name, color=CLASS_COLOURS[name])
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_ylabel(f"fraction of top-{int(summary['k'].max())} pairs")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(title)
    ax2.plot(xs, summary["entropy_norm"], "o-", label="entropy / log(#keys) (per head)")
    ax2.plot(xs, summary["entropy_of_mean_norm"], "s--", label="entropy of head mean (norm.)")
    ax2.set_ylabel("normalised entropy")
    ax2.set_ylim(0, 1.05)
    ax3 = ax2.twinx()
    ax3.plot(xs, summary["peak_mean"], "^:", color="#d62728", label="mean peak prob.")
    ax3.set_ylabel("mean peak probability", color="#d62728")
    ax2.set_xlabel(f"{summary['kind'].iloc[0]} layer")
    lines = ax2.get_legend_handles_labels()
    extra = ax3.get_legend_handles_labels()
    ax2.legend(
        lines[0] + extra[0],
        lines[1] + extra[1],
        loc="upper left",
        bbox_to_anchor=(1.08, 1.0),
        fontsize=8,
    )
    return _save(fig, path)


def plot_profile_bars(table: pd.DataFrame, path: Path, title: str) -> Path:
    """One stacked bar per view count: seconds per category (left), share of forward (right)."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    views = table["views"].astype(str).tolist()
    xs = _ticks(ax, views)
    _ticks(ax2, views)
    cats = [c for c in CATEGORIES if c in table]
    bottom = [0.0] * len(views)
    share_bottom = [0.0] * len(views)
    for cat in cats:
        vals = table[cat].tolist()
        share = (table[cat] / table["forward_s"]).tolist()
        ax.bar(xs, vals, bottom=bottom, label=cat, color=CATEGORY_COLOURS[cat])
        ax2.bar(xs, share, bottom=share_bottom, label=cat, color=CATEGORY_COLOURS[cat])
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        share_bottom = [b + v for b, v in zip(share_bottom, share, strict=True)]
    ax.set_xlabel("views")
    ax.set_ylabel("forward time (s)")
    ax.set_title("time per block category")
    ax2.set_xlabel("views")
    ax2.set_ylabel("share of forward time")
    ax2.set_ylim(0, 1)
    ax2.set_title("share")
    ax2.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_profile_layers(profile: pd.DataFrame, views: int, path: Path, title: str) -> Path:
    """Per layer at one view count: frame attention, global attention and MLP seconds."""
    df = profile[(profile["views"] == views) & (profile["layer"] >= 0)]
    fig, ax = plt.subplots(figsize=(10, 4))
    layers = sorted(df["layer"].unique())
    xs = _ticks(ax, [str(g) for g in layers])
    bottom = [0.0] * len(layers)
    for cat in ("frame_attn", "global_attn", "mlp"):
        sub = df[df["category"] == cat].groupby("layer")["time_s"].sum()
        vals = [float(sub.get(g, 0.0)) for g in layers]
        ax.bar(xs, vals, bottom=bottom, label=cat, color=CATEGORY_COLOURS[cat])
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.set_xlabel("layer")
    ax.set_ylabel("seconds")
    ax.set_title(f"{title} ({views} views)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_probe(probe: pd.DataFrame, path: Path, title: str) -> Path:
    """Grid vs content agreement of the hub keys per layer."""
    fig, ax = plt.subplots(figsize=(10, 3.8))
    xs = _ticks(ax, probe["layer"].astype(str).tolist())
    ax.plot(xs, probe["grid_agreement"], "o-", label="grid agreement (follows the image grid)")
    ax.plot(xs, probe["content_agreement"], "s-", label="content agreement (follows content)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("layer")
    ax.set_ylabel("fraction of hub keys")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, path)
