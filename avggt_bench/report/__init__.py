"""Records -> tables, plots and the comparison with published numbers.

    python -m avggt_bench.report results/runs/<machine> [more folders or records]
        [--reference results/reference/<machine>] [--out DIR] [--wandb]

Writes to the output folder (default: the first path): `summary.md` (one section per machine:
a compact table, the speedup pivot, flagged rows and the jobs that did not finish ok),
`summary.csv` (every column of the long table), `summary.tex`, `speedup.csv`, `plots/*.png`,
`published_comparison.{md,csv}` (speed), `expected_results.{md,csv}` (accuracy per protocol
preset and metric beside the published number, with a stated tolerance), `index.html` (all of it
as one offline page, with depth maps and point clouds of the scenes whose predictions were saved),
and lists in `summary.md` every record it converted, ignored or superseded. With `--reference`,
the reference records appear beside the run's (source `reference`) and each run row gets the time
ratio to the same configuration in the reference. Reports are derived from the JSON records and
never edited by hand.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from avggt_bench.report.flags import RULES, add_flags, provenance_notes
from avggt_bench.report.published import comparison
from avggt_bench.report.speedups import add_reference
from avggt_bench.report.tables import (
    accuracy_table,
    add_speedups,
    compact_table,
    find_records,
    flatten,
    load_table,
    speedup_table,
    status_counts,
    status_table,
    summary_table,
)

__all__ = [
    "add_speedups",
    "find_records",
    "flatten",
    "load_table",
    "main",
    "speedup_table",
    "summary_table",
    "write_report",
]

log = logging.getLogger(__name__)
KEEP_COLUMNS = ("views", "variant", "time (s)", "status", "source")


def _markdown(table: pd.DataFrame) -> str:
    table = table.astype(object).where(table.notna(), None)  # blank cells, not "nan"
    return table.to_markdown(index=False, floatfmt=".4g", missingval="")


def _machine_section(df: pd.DataFrame, machine: str) -> list[str]:
    table = compact_table(df)
    common = {
        c: table[c].iloc[0]
        for c in table.columns
        if len(table) > 1 and c not in KEEP_COLUMNS and table[c].nunique(dropna=False) == 1
    }
    table = table.drop(columns=list(common))
    names = sorted(df["device"].dropna().astype(str).unique())
    sources = set(df["source"]) if "source" in df else {"run"}
    lines = [f"## {machine} (reference)" if sources == {"reference"} else f"## {machine}", ""]
    if names and names != [machine]:
        lines += [f"Device: {', '.join(names)}.", ""]
    lines += [f"Jobs: {status_counts(df)}.", ""]
    lines += [f"> {line}" for line in provenance_notes(df)] + ([""] if provenance_notes(df) else [])
    if common:
        lines += ["Common to every row: " + "; ".join(f"{k}: {v}" for k, v in common.items()), ""]
    if (df["weights"] == "random").any():
        lines += [
            "Weights: **random** (no checkpoint). Timings and memory are meaningful; "
            "fidelity and accuracy are not.",
            "",
        ]
    lines += [
        _markdown(table),
        "",
        "time (s): forward median (s) of the timed repeats (protocol jobs: the sum of per-scene "
        "medians over the scenes that finished); spread: (max - min) / median of the repeats; "
        "memory: peak of the timed part. Every column: summary.csv.",
    ]
    speed = speedup_table(df)
    if not speed.empty:
        lines += [
            "",
            "### Speedup over the dense parent",
            "",
            "Measured in the same results (same source, machine, precision, kernels, input); in "
            "brackets the cost model's MAC ratio and the share of it that was realised. Protocol "
            "jobs: over the scenes both sides finished.",
            "",
            _markdown(speed.drop(columns=[c for c in ("machine", "device") if c in speed])),
        ]
    flagged = df[df["flags"] != ""] if "flags" in df else df.iloc[:0]
    lines += ["", "### Flagged rows", "", RULES, ""]
    if flagged.empty:
        lines.append("No row is flagged.")
    else:
        cols = [c for c in ("source", "model", "variant", "num_views", "flags", "flag_cause")]
        lines.append(_markdown(flagged[[c for c in cols if c in flagged]]))
    failed = status_table(df)
    if not failed.empty:
        lines += ["", "### Jobs that did not finish ok", "", _markdown(failed)]
    return [*lines, ""]


def _verdict_counts(table: pd.DataFrame) -> str:
    if table.empty:
        return "No published number is mapped."
    counts = table["verdict"].value_counts()
    return f"{len(table)} numbers: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + "."


def write_report(df: pd.DataFrame, notes: list[dict], out_dir: Path) -> dict[str, Path]:
    """Every output file of the report; returns them by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    df = add_flags(add_reference(add_speedups(df)))
    paths = {
        "markdown": out_dir / "summary.md",
        "csv": out_dir / "summary.csv",
        "latex": out_dir / "summary.tex",
        "speedup": out_dir / "speedup.csv",
        "published_md": out_dir / "published_comparison.md",
        "published_csv": out_dir / "published_comparison.csv",
    }
    hidden = ["path", *(c for c in df.columns if c.startswith("_"))]
    df.drop(columns=hidden, errors="ignore").to_csv(paths["csv"], index=False)
    speedup_table(df).to_csv(paths["speedup"], index=False)
    summary_table(df).to_latex(paths["latex"], index=False, float_format="%.4g", na_rep="")
    from avggt_bench.report.plots import plot_all  # matplotlib only when plots are drawn

    plots = plot_all(df, out_dir / "plots")
    runs = df[df["source"] == "run"] if "source" in df else df
    published = comparison(runs)
    published.to_csv(paths["published_csv"], index=False)
    matched = published[published["ours (measured)"].notna()] if not published.empty else published
    paths["published_md"].write_text(
        "# Our numbers beside the published ones\n\n"
        "Published values from `results/published.csv`; `ours` is the measured value of a record "
        "at the same view count (blank: no such record); the cost model gives the full-size "
        "model's MAC ratio at 518x392. Rows where settings differ say how.\n\n"
        f"{len(matched)} of {len(published)} published rows have a measured counterpart.\n\n"
        + (_markdown(published) if not published.empty else "(none)")
        + "\n"
    )
    # imported here so that `python -m avggt_bench.report.expected_map` finds it not yet loaded
    from avggt_bench.report.expected import write as write_expected

    expected_paths, expected_table = write_expected(runs, out_dir)
    paths.update(expected_paths)
    accuracy = accuracy_table(df)
    if not accuracy.empty:
        paths["accuracy_csv"] = out_dir / "accuracy.csv"
        accuracy.to_csv(paths["accuracy_csv"], index=False)
    lines = [
        "# Benchmark summary",
        "",
        f"Generated by `python -m avggt_bench.report` from {len(df)} records; do not edit by hand.",
        "",
    ]
    if "source" in df and (df["source"] == "reference").any():
        lines += [
            "Rows of source `reference` are the reference numbers given with `--reference`; "
            "`time / reference` is this run's time over the same configuration's there "
            "(speedups never pair the two).",
            "",
        ]
    for machine, group in df.groupby("machine", sort=True, dropna=False):
        lines += _machine_section(group, str(machine))
    if not accuracy.empty:
        lines += [
            "## Accuracy per protocol",
            "",
            "Aggregated by each preset's rule (`acc_*`); `fidp_*`: the same metrics against the "
            "dense parent's predictions. Scenes not evaluated are counted, never averaged in.",
            "",
            _markdown(accuracy),
            "",
        ]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots] + [""]
    if (out_dir / "metrics_timing.md").is_file():
        lines += [
            "## Metric timing",
            "",
            "Each metric on an 800-view synthetic scene: [metrics_timing.md](metrics_timing.md).",
            "",
        ]
    lines += [
        "## Published numbers",
        "",
        f"See [published_comparison.md](published_comparison.md): {len(matched)} of "
        f"{len(published)} published rows of implemented methods have a measured counterpart.",
        "",
        "## Expected results",
        "",
        "See [expected_results.md](expected_results.md): each published accuracy number a "
        "protocol preset should reproduce, ours beside it, the difference and the tolerance "
        "(absolute, in the published unit, stated per row). " + _verdict_counts(expected_table),
        "",
    ]
    if notes:
        lines += ["## Records not used as they are", "", _markdown(pd.DataFrame(notes)), ""]
    paths["markdown"].write_text("\n".join(lines))
    from avggt_bench.report.html import write_index  # plotly only when a cloud is drawn

    paths["html"] = write_index(out_dir, df)
    return {**paths, **{p.stem: p for p in plots}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path, help="record files or folders")
    parser.add_argument(
        "--reference",
        type=Path,
        action="append",
        default=[],
        help="reference records (e.g. results/reference/<machine>) to put beside the run's",
    )
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    parser.add_argument("--wandb", action="store_true", help="also push tables and plots to wandb")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    missing = [p for p in [*args.paths, *args.reference] if not p.exists()]
    if missing:
        parser.error(f"not found: {', '.join(map(str, missing))}")
    df, notes = load_table(args.paths, args.reference)
    if df.empty:
        log.error("no usable records under %s", ", ".join(map(str, args.paths)))
        for note in notes:
            log.error("  %s %s: %s", note["action"], note["path"], note["reason"])
        return 1
    out = args.out or (args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent)
    paths = write_report(df, notes, out)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if args.wandb:
        from avggt_bench.job.loggers import push_report

        push_report(paths, pd.read_csv(paths["csv"]))  # the full table as written
    return 0
