"""What scripts/gpu_check.py writes into its output folder, rewritten after every row.

summary.md (environment, correctness, the timing rows, the speedup table with the cost model's
prediction beside each measured speedup, skipped rows and why), gpu_check.json (the same as data),
records.tar.gz (the job records and, at the end, the project's report of them), speedup.png and
report.md. Six files at most: the device tool brings back eight.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any


def check_line(row: dict[str, Any]) -> str:
    err = row.get("max_rel_err")
    err_s = f" max rel err {err:.2e}" if isinstance(err, float) else ""
    return f"[check] {row['status']:7s} {row['check']}:{err_s} {row.get('detail', '')}"


def row_entry(label: str, row: Any, record: Any, wall_s: float) -> dict[str, Any]:
    timings = record.timings or {}
    forward = timings.get("forward") or {}
    memory = record.memory or {}
    fidelity = (record.metrics or {}).get("fidelity") or {}
    return {
        "row": label,
        "family": row.family,
        "attention": row.attention,
        "views": row.views,
        "actual_views": (record.job or {}).get("num_views"),
        "status": record.status,
        "message": (record.message or "").splitlines()[0][:200] if record.message else "",
        "median_s": forward.get("median_s"),
        "repeats": len(forward.get("times_s") or []),
        "peak_gb": (memory.get("peak_bytes") or 0) / 1e9 or None,
        "memory_kind": memory.get("kind"),
        "macs": (record.cost or {}).get("macs"),
        "precision": (record.job or {}).get("precision"),
        "build_s": timings.get("model_build_s"),
        "fidelity": {k: v for k, v in fidelity.items() if isinstance(v, (int, float))},
        "wall_s": round(wall_s, 1),
        "run_id": record.run_id,
    }


def row_line(entry: dict[str, Any]) -> str:
    if entry["status"] != "ok":
        return f"[row]   {entry['status']:7s} {entry['row']}: {entry.get('message', '')}"
    return (
        f"[row]   ok      {entry['row']}: median {entry['median_s']:.3f} s, peak "
        f"{entry['peak_gb'] or 0:.2f} GB, wall {entry['wall_s']:.0f} s"
    )


def speedups(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Measured and cost-model speedup over dense of the same family at the same views."""
    ok = [r for r in rows if r["status"] == "ok" and r.get("median_s")]
    dense = {(r["family"], r["views"]): r for r in ok if r["attention"] == "dense"}
    out = []
    for r in ok:
        base = dense.get((r["family"], r["views"]))
        if r["attention"] == "dense" or base is None:
            continue
        predicted = base["macs"] / r["macs"] if base.get("macs") and r.get("macs") else None
        out.append({**r, "speedup": base["median_s"] / r["median_s"], "predicted": predicted})
    return out


def _fmt(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "-"


def markdown(state: dict[str, Any]) -> str:
    env = state["environment"]
    lines = ["# GPU check", "", *(f"- {k}: {v}" for k, v in env.items()), ""]
    lines += [
        "## Correctness",
        "",
        "| check | status | max rel err | detail |",
        "|---|---|---|---|",
    ]
    for c in state["correctness"]:
        err = _fmt(c.get("max_rel_err"), ".2e")
        lines.append(f"| {c['check']} | {c['status']} | {err} | {c.get('detail', '')} |")
    lines += ["", f"## Timing rows ({env.get('precision')}, random weights)", ""]
    lines += ["| row | status | median s | peak GB | wall s | note |", "|---|---|---|---|---|---|"]
    for r in state["rows"]:
        lines.append(
            f"| {r['row']} | {r['status']} | {_fmt(r.get('median_s'), '.3f')} | "
            f"{_fmt(r.get('peak_gb'), '.2f')} | {_fmt(r.get('wall_s'), '.0f')} | "
            f"{r.get('message', '')} |"
        )
    lines += ["", "## Speedup over dense (same model, same views)", ""]
    lines += [
        "| model | method | views | measured | cost model | peak GB |",
        "|---|---|---|---|---|---|",
    ]
    for s in speedups(state["rows"]):
        lines.append(
            f"| {s['family']} | {s['attention']} | {s['views']} | {s['speedup']:.2f}x | "
            f"{_fmt(s['predicted'], '.2f')}x | {_fmt(s.get('peak_gb'), '.2f')} |"
        )
    skipped = [r for r in state["rows"] if r["status"] == "skipped"]
    if skipped:
        lines += ["", f"{len(skipped)} row(s) skipped (see the note column)."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    data = speedups(rows)
    if not data:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in sorted({(d["family"], d["attention"]) for d in data}):
        pts = sorted(
            (d["views"], d["speedup"], d["predicted"])
            for d in data
            if (d["family"], d["attention"]) == key
        )
        line = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=" ".join(key))[0]
        if all(p[2] for p in pts):
            ax.plot([p[0] for p in pts], [p[2] for p in pts], "--", color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlabel("views")
    ax.set_ylabel("speedup over dense (solid: measured, dashed: cost model)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def project_report(records: Path, out: Path) -> str:
    """The project's own report of the records (avggt_bench.report), or why it failed."""
    if not any(records.glob("*.json")):
        return "no records\n"
    proc = subprocess.run(
        [sys.executable, "-m", "avggt_bench.report", str(records), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return proc.stdout if proc.returncode == 0 else f"report failed:\n{proc.stderr[-3000:]}\n"


def write(out: Path, state: dict[str, Any], records: Path, final: bool = False) -> None:
    (out / "summary.md").write_text(markdown(state))
    (out / "gpu_check.json").write_text(json.dumps(state, indent=1, default=str))
    report_dir = records.parent / "report"
    if final:
        (out / "report.md").write_text(project_report(records, report_dir))
        plot(state["rows"], out / "speedup.png")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(records, arcname="records")
        if report_dir.exists():
            tar.add(report_dir, arcname="report")
    (out / "records.tar.gz").write_bytes(buf.getvalue())
