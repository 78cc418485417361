"""The analysis tasks behind `python -m avggt_bench.analyze`: each takes a built model, the scene
and its options, writes its tables and figures into `out_dir`, and returns a summary dict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from avggt_bench.analysis.blocks import block_map
from avggt_bench.analysis.capture import capture
from avggt_bench.analysis.inputs import AnalysisInput
from avggt_bench.analysis.outputs import write_table
from avggt_bench.analysis.pairs import PRIMARY, layer_summary, pair_flags, pair_table, primary_class
from avggt_bench.analysis.plots import (
    plot_pair_profile,
    plot_probe,
    plot_profile_bars,
    plot_profile_layers,
)
from avggt_bench.analysis.probe import rotation_probe
from avggt_bench.analysis.profiler import category_table, profile_views
from avggt_bench.attention.config import parse_layers

# Layer groups of the AVGGT paper (early 0-8 by its t_early = 9, late 20-23 by its ablation that
# converts them to frame attention); π³'s are scaled to its 18 global layers, and the late
# boundary is soft (descriptions of the paper also use 17-23).
GROUPS = {
    "vggt": {"early": "0-8", "middle": "9-19", "late": "20-23"},
    "pi3": {"early": "0-9", "middle": "10-14", "late": "15-17"},
}


def resolve_layers(model: nn.Module, kind: str, spec: Any) -> list[int]:
    return sorted(set(parse_layers(spec, len(block_map(model).blocks(kind)))))


def _title(meta: Mapping[str, Any], what: str) -> str:
    return f"{meta['model']} ({meta['weights']} weights, {meta['attention']}): {what}"


def _class_means(summary: pd.DataFrame, groups: Mapping[str, Any], n: int) -> pd.DataFrame:
    rows = []
    cols = [f"frac_{c}" for c in PRIMARY] + ["entropy_norm", "peak_mean"]
    cols = [c for c in cols if c in summary]
    for name, spec in groups.items():
        members = set(parse_layers(spec, n))
        sub = summary[summary["layer"].isin(members)]
        if sub.empty:
            continue
        row = {"group": name, "layers": str(spec), "analysed": len(sub)}
        for c in cols:
            row[c] = None if sub[c].isna().all() else float(sub[c].astype(float).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def _head_table(caps: Mapping[int, Any], geometry, radius: int, occlusion: bool) -> pd.DataFrame:
    rows = []
    for g, cap in sorted(caps.items()):
        log_keys = cap.num_keys.double().clamp(min=2).log()
        for h in range(cap.head_entropy.shape[0]):
            flags = pair_flags(
                cap.head_top_queries[h],
                cap.head_top_keys[h],
                cap.layout,
                geometry,
                radius,
                occlusion,
            )
            classes = primary_class(flags)
            row = {"layer": g, "head": h}
            for c in PRIMARY:
                row[f"frac_{c}"] = sum(x == c for x in classes) / max(len(classes), 1)
            row["entropy_norm"] = float((cap.head_entropy[h] / log_keys).mean())
            row["peak_mean"] = float(cap.head_peak[h].mean())
            rows.append(row)
    return pd.DataFrame(rows)


def pairs_task(
    model: nn.Module,
    scene: AnalysisInput,
    opts: Mapping[str, Any],
    out_dir: Path,
    meta: Mapping[str, Any],
    groups: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Capture every chosen layer, classify its top-k pairs, write the profile table and plot."""
    kind = opts.get("kind", "global")
    layers = resolve_layers(model, kind, opts.get("layers", "all"))
    radius, occlusion = int(opts.get("radius", 1)), bool(opts.get("occlusion_check", False))
    cap_opts = dict(
        kind=kind,
        heads=opts.get("heads", "mean"),
        top_k=int(opts.get("k", 50)),
        query_chunk=int(opts.get("query_chunk", 64)),
        key_chunk=int(opts.get("key_chunk", 65536)),
        dtype=opts.get("dtype", "float32"),
        cross_view_only=bool(opts.get("cross_view_only", False)),
        seed=int(meta.get("seed", 0)),
    )
    # all layers in one forward: each keeps only O(queries + k) reducer state
    caps = capture(model, scene.images, layers, opts.get("queries", "auto"), **cap_opts)
    geometry = scene.geometry
    summary = pd.DataFrame([layer_summary(caps[g], geometry, radius, occlusion) for g in layers])
    files = write_table(
        summary, out_dir / "pair_profile", _title(meta, "top-k pair classes"), dict(meta)
    )
    files.append(
        plot_pair_profile(summary, out_dir / "pair_profile.png", _title(meta, "top-k pair classes"))
    )
    if opts.get("save_pairs", True):
        pairs = pd.concat([pair_table(caps[g], geometry, radius, occlusion) for g in layers])
        pairs.insert(0, "weights", meta["weights"])
        pairs.to_csv(out_dir / "pairs_topk.csv", index=False)
        files.append(out_dir / "pairs_topk.csv")
    if opts.get("heads") == "all":
        heads = _head_table(caps, geometry, radius, occlusion)
        files += write_table(
            heads, out_dir / "pair_heads", _title(meta, "per-head pairs"), dict(meta)
        )
    result: dict[str, Any] = {"layers": layers, "kind": kind}
    if groups and kind == "global":
        n = len(block_map(model).blocks(kind))
        table = _class_means(summary, groups, n)
        if not table.empty:
            files += write_table(
                table,
                out_dir / "pair_groups",
                _title(meta, "pair classes by layer group"),
                dict(meta),
            )
            result["groups"] = table.to_dict(orient="records")
    result["files"] = [str(p) for p in files]
    return result


def probe_task(
    model: nn.Module,
    scene: AnalysisInput,
    opts: Mapping[str, Any],
    probe_opts: Mapping[str, Any],
    out_dir: Path,
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """The 180° rotation probe over the chosen layers."""
    kind = opts.get("kind", "global")
    layers = resolve_layers(model, kind, probe_opts.get("layers", opts.get("layers", "all")))
    views = probe_opts.get("views", "all")
    table = rotation_probe(
        model,
        scene.images,
        layers,
        probe_opts.get("queries", opts.get("queries", "auto")),
        views=views if views == "all" else int(views),
        n_hubs=int(probe_opts.get("n_hubs", 20)),
        radius=int(opts.get("radius", 1)),
        seed=int(meta.get("seed", 0)),
        kind=kind,
        top_k=int(opts.get("k", 50)),
        query_chunk=int(opts.get("query_chunk", 64)),
        key_chunk=int(opts.get("key_chunk", 65536)),
        dtype=opts.get("dtype", "float32"),
    )
    files = write_table(
        table, out_dir / "rotation_probe", _title(meta, "180° rotation probe"), dict(meta)
    )
    files.append(
        plot_probe(
            table, out_dir / "rotation_probe.png", _title(meta, "hub keys under a 180° rotation")
        )
    )
    return {
        "layers": layers,
        "rows": table.to_dict(orient="records"),
        "files": [str(p) for p in files],
    }


def profile_task(
    model: nn.Module,
    make_images,
    views: Sequence[int],
    opts: Mapping[str, Any],
    out_dir: Path,
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """Per-block profile for each view count: stacked bars and the per-layer split."""
    views = sorted(int(v) for v in views)
    profile = profile_views(
        model, make_images, views, int(opts.get("warmup", 1)), int(opts.get("repeats", 2))
    )
    profile.insert(0, "weights", meta["weights"])
    profile.to_csv(out_dir / "profile_blocks.csv", index=False)
    table = category_table(profile.drop(columns="weights"))
    files = [out_dir / "profile_blocks.csv"]
    files += write_table(
        table,
        out_dir / "profile_categories",
        _title(meta, "forward time per block category"),
        dict(meta),
    )
    files.append(
        plot_profile_bars(table, out_dir / "profile_bars.png", _title(meta, "per-block profile"))
    )
    files.append(
        plot_profile_layers(
            profile, views[-1], out_dir / "profile_layers.png", _title(meta, "time per layer")
        )
    )
    share = table.set_index("views")["global_attn_share"].to_dict()
    return {"views": views, "global_attn_share": share, "files": [str(p) for p in files]}
