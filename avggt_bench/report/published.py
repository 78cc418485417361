"""Our numbers beside the published ones (`results/published.csv`).

`results/published.csv` is built from `avggt_bench/resources/published_results.csv` (every
published number we compare with, one per row, with its source, table, hardware and confidence)
by adding two columns: `family` (vggt | pi3) and `variant` (our attention
preset) where the published method maps onto one. The comparison lists each published speedup,
time or memory of a method we implement, our measured value at the same view count when a record
exists, the cost model's speedup for the full-size model at 518x392 and that view count, and what
differs between the settings.

    python -m avggt_bench.report.published    # rebuild results/published.csv
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from avggt_bench.paths import PACKAGE_DIR, REPO_DIR

SOURCE = PACKAGE_DIR / "resources" / "published_results.csv"
BUILT = REPO_DIR / "results" / "published.csv"

# published model name -> (family, our attention preset)
VARIANTS = {
    "VGGT": ("vggt", "dense"),
    "VGGT*": ("vggt", "dense"),
    "π³": ("pi3", "dense"),
    "FastVGGT": ("vggt", "fastvggt"),
    "VGGT(G2F)": ("vggt", "g2f"),
    "VGGT(G2M)": ("vggt", "g2m"),
    "AVGGT(2)⁻": ("vggt", "avggt_2_minus"),
    "VGGT-S25": ("vggt", "bsa_s25"),
    "VGGT-S50": ("vggt", "bsa_s50"),
    "VGGT-S75": ("vggt", "bsa_s75"),
    "FasterVGGT-25": ("vggt", "bsa_s25"),
    "FasterVGGT-75": ("vggt", "bsa_s75"),
    "π³-S25": ("pi3", "bsa_s25"),
    "π³-S50": ("pi3", "bsa_s50"),
    "π³-S75": ("pi3", "bsa_s75"),
}
COMPARED_METRICS = ("speedup", "time_s", "peak_mem_gb")


def map_variant(model: str) -> tuple[str | None, str | None]:
    if model in VARIANTS:
        return VARIANTS[model]
    m = re.fullmatch(r"AVGGT\((\d)\)", model)
    if m:
        return "vggt", f"avggt_{m.group(1)}"
    m = re.fullmatch(r"Aπ³\((\d)\)", model)
    if m:
        return "pi3", f"api3_{m.group(1)}"
    return None, None


def build(source: Path = SOURCE, out: Path = BUILT) -> pd.DataFrame:
    df = pd.read_csv(source)
    mapped = [map_variant(str(m)) for m in df["model"]]
    df["family"] = [f for f, _ in mapped]
    df["variant"] = [v for _, v in mapped]
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return df


def load(path: Path = BUILT) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() else build()


def _cost_model_speedup(family: str, variant: str, frames: int) -> float:
    """The cost model's MAC ratio dense / variant for the full-size model at 518x392.

    A published row maps onto one of our presets through `VARIANTS` (or the AVGGT(σ) / Aπ³(σ)
    names); a preset that does not resolve for its family is a mistake in that mapping, so it
    stops the report with the row named instead of leaving a blank cell."""
    from avggt_bench.attention.config import resolve_routes
    from avggt_bench.errors import ConfigError
    from avggt_bench.flops import pi3_cost, vggt_cost
    from avggt_bench.models.pi3.model import PI3
    from avggt_bench.models.vggt.model import VGGT_1B

    try:
        if family == "vggt":
            dense = vggt_cost(VGGT_1B, frames, 28, 37, ["global"] * 24).total
            fast = vggt_cost(VGGT_1B, frames, 28, 37, resolve_routes(variant, "vggt", 24))
        elif family == "pi3":
            dense = pi3_cost(PI3, frames, 28, 37, ["global"] * 18).total
            fast = pi3_cost(PI3, frames, 28, 37, resolve_routes(variant, "pi3", 18))
        else:
            raise ConfigError(f"unknown model family {family!r} (expected vggt or pi3)")
    except ConfigError as exc:
        raise ConfigError(
            f"published row ({family}, {variant!r}, {frames} frames): {exc}. Fix the mapping in "
            "avggt_bench/report/published.py VARIANTS or the family/variant columns of "
            "results/published.csv (rebuild it: python -m avggt_bench.report.published)"
        ) from exc
    return dense / fast.total


def comparison(ours: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per published number of a method we implement, with ours beside it."""
    pub = load() if published is None else published
    pub = pub[pub["variant"].notna() & pub["metric"].isin(COMPARED_METRICS)].copy()
    pub = pub[pd.to_numeric(pub["num_frames"], errors="coerce").notna()]
    rows = []
    for _, p in pub.iterrows():
        frames = int(float(p["num_frames"]))
        family, variant = p["family"], p["variant"]
        mine = pd.DataFrame()
        if not ours.empty:
            base = ours["attention"].astype(str).str.replace(r" \(.*\)$", "", regex=True)
            mine = ours[
                (ours["status"] == "ok")
                & (ours["num_views"] == frames)
                & (base == variant)
                & ours["model"].astype(str).str.startswith(family)
            ]
        ours_value, differs = None, []
        if not mine.empty:
            row = mine.iloc[-1]
            ours_value = {
                "speedup": row.get("speedup"),
                "time_s": row.get("forward_median_s"),
                "peak_mem_gb": row.get("peak_memory_gb"),
            }[p["metric"]]
            if row["model"] not in ("vggt", "pi3"):
                differs.append(f"our model {row['model']}")
            differs.append(f"our device {row['device']} vs {p['hardware']}")
            if row.get("weights") == "random":
                differs.append("random weights")
            if row.get("dataset") != p["dataset"]:
                differs.append(f"dataset {row.get('dataset')} vs {p['dataset']}")
        predicted = (
            _cost_model_speedup(family, variant, frames)
            if p["metric"] == "speedup" and variant != "dense"
            else None
        )
        rows.append(
            {
                "source": p["source"],
                "dataset": p["dataset"],
                "frames": frames,
                "published model": p["model"],
                "metric": p["metric"],
                "published": p["value"],
                "hardware": p["hardware"],
                "ours (measured)": ours_value,
                "cost model (full size, 518x392)": predicted,
                "settings differ": "; ".join(differs) if differs else ("" if mine.empty else "no"),
                "confidence": p["confidence"],
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    frame = build()
    print(f"wrote {BUILT} ({len(frame)} rows, {frame['variant'].notna().sum()} mapped to presets)")
