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

import csv
from pathlib import Path

import pandas as pd

from avggt_bench.paths import PACKAGE_DIR, REPO_DIR

SOURCE = PACKAGE_DIR / "resources" / "published_results.csv"
BUILT = REPO_DIR / "results" / "published.csv"

# published model name -> (family, our attention preset): data, one row per published name
VARIANTS_FILE = PACKAGE_DIR / "resources" / "published_variants.csv"
COMPARED_METRICS = ("speedup", "time_s", "peak_mem_gb")


def variants(path: Path = VARIANTS_FILE) -> dict[str, tuple[str, str]]:
    """Published model name -> (family, our attention preset), from `published_variants.csv`."""
    with path.open(newline="", encoding="utf-8") as f:
        return {r["published_model"]: (r["family"], r["preset"]) for r in csv.DictReader(f)}


def map_variant(model: str) -> tuple[str | None, str | None]:
    return variants().get(model, (None, None))


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

    A published row maps onto one of our presets through `published_variants.csv`; a preset
    that does not resolve for its family is a mistake in that mapping, so it stops the report
    with the row named instead of leaving a blank cell."""
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
            "avggt_bench/resources/published_variants.csv or the family/variant columns of "
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
