"""One record -> one row of the long table.

Reads both record layouts: the current one (`provenance.machine`, `provenance.load`, protocol
jobs with per-scene `forward` statistics and `timings.forward_total_s`) and the first one, whose
committed records lack those fields: their machine is rebuilt from the old device fields, their
machine load is unknown (never flagged), and their protocol scenes carry a bare `forward_s`.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Config leaves that say where or how a job was stored or logged, never what it measured: they
# neither label a row nor keep two records of the same measurement apart.
NOT_MEASURED = ("record.", "paths.", "logger.", "hydra.")
NOT_MEASURED_LEAVES = {"resume", "num_views"}  # num_views is a column of its own
ROUTE_COLUMN = "route: "  # prefix of the columns a route names (its facts and microbenchmark)


def machine_slug(rec: dict[str, Any]) -> str | None:
    """`provenance.machine`, or for old records the same slug rebuilt from the device fields
    (`cuda-<gpu model>`, `cpu-<cpu model>-<cores>c-<threads>t`)."""
    prov = rec.get("provenance") or {}
    if prov.get("machine"):
        return str(prov["machine"])
    if prov.get("gpu"):
        return slug(f"cuda-{prov['gpu']}")
    if prov.get("cpu") is not None or prov.get("device_type") == "cpu":
        cpu = prov.get("cpu") or "unknown"
        return slug(f"cpu-{cpu}-{prov.get('cpu_cores', '?')}c-{prov.get('torch_threads', '?')}t")
    device = (rec.get("job") or {}).get("device")
    return slug(str(device)) if device else None


def slug(text: str) -> str:
    """Lower case, trademarks ((R), (TM), (C)) dropped, runs of anything but [a-z0-9] become one
    '-': the rule the job uses for `provenance.machine` (avggt_bench/records/machine.py), so an old
    record's rebuilt slug names the same machine as a new record's."""
    text = re.sub(r"\((r|tm|c)\)", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def config_leaves(config: dict[str, Any] | None) -> dict[str, str]:
    """Dotted path -> JSON text of every leaf of a resolved config that defines a measurement."""
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
            return
        path = prefix[:-1]
        if path in NOT_MEASURED_LEAVES or path.startswith(NOT_MEASURED):
            return
        out[path] = json.dumps(node, sort_keys=True, default=str)

    walk(config or {}, "")
    return out


def scene_times(rec: dict[str, Any]) -> dict[str, float]:
    """Protocol records: scene id -> forward median (s) of every scene whose status is ok."""
    out = {}
    for row in rec.get("scenes") or []:
        if row.get("status") != "ok":
            continue
        fwd = row.get("forward")
        median = fwd.get("median_s") if isinstance(fwd, dict) else row.get("forward_s")
        if median is not None:
            out[str(row.get("scene_id", row.get("scene")))] = float(median)
    return out


def spread_share(fwd: dict[str, Any]) -> float | None:
    """(max - min) / median of the recorded repeats; None with fewer than two."""
    times = fwd.get("times_s") or []
    median = fwd.get("median_s")
    if len(times) < 2 or not median:
        return None
    return (max(times) - min(times)) / median


def _timing_columns(rec: dict[str, Any]) -> dict[str, Any]:
    timings = rec.get("timings") or {}
    fwd = timings.get("forward") or {}
    scenes = scene_times(rec)
    is_protocol = bool(rec.get("scenes")) or "forward_total_s" in timings
    if is_protocol:
        total = timings.get("forward_total_s")
        if total is None:  # old protocol records: forward.median_s held the sum over scenes
            total = fwd.get("median_s")
        stats = [s.get("forward") for s in rec.get("scenes") or [] if s.get("status") == "ok"]
        spreads = [spread_share(s) for s in stats if isinstance(s, dict)]
        spreads = [s for s in spreads if s is not None]
        repeats = [len(s.get("times_s") or []) for s in stats if isinstance(s, dict)]
        return {
            "protocol": True,
            "forward_median_s": None,
            "forward_total_s": total,
            "forward_min_s": None,
            "forward_max_s": None,
            "forward_spread_s": None,
            "spread_share": max(spreads) if spreads else None,
            "repeats": min(repeats) if repeats else None,
            "scenes_ok": len(scenes),
            "scenes_total": len(rec.get("scenes") or []),
            "_scene_times": scenes,
        }
    times = fwd.get("times_s") or []
    return {
        "protocol": False,
        "forward_median_s": fwd.get("median_s"),
        "forward_total_s": None,
        "forward_min_s": fwd.get("min_s", min(times) if times else None),
        "forward_max_s": fwd.get("max_s", max(times) if times else None),
        "forward_spread_s": fwd.get("spread_s"),
        "spread_share": spread_share(fwd),
        "repeats": len(times) or None,
        "scenes_ok": None,
        "scenes_total": None,
        "_scene_times": {},
    }


def _provenance_columns(rec: dict[str, Any]) -> dict[str, Any]:
    prov = rec.get("provenance") or {}
    load = prov.get("load") if isinstance(prov.get("load"), dict) else {}
    share = load.get("other_cpu_share")
    busy = load.get("busy")
    if busy is None and share is not None:
        busy = share > 0.25
    return {
        "machine": machine_slug(rec),
        "device": prov.get("device_name") or machine_slug(rec),
        "git_sha": (prov.get("git_sha") or "")[:10] or None,
        "git_dirty": prov.get("git_dirty"),
        "torch": prov.get("torch"),
        "cuda": prov.get("cuda"),
        "package_version": prov.get("package_version"),
        "load_busy": busy,  # None: not recorded (old records): unknown, never flagged
        "other_cpu_share": share,
        "loadavg_1m": (load.get("loadavg_before") or [None])[0],
    }


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
    """One row of the long table from one record (either layout)."""
    job, model = rec.get("job") or {}, rec.get("model") or {}
    cost = rec.get("cost") or {}
    comps = cost.get("components") or {}
    macs = cost.get("macs")
    inp = rec.get("input") or {}
    hw = inp.get("image_hw")
    timing = _timing_columns(rec)
    median = timing["forward_median_s"]
    message = (rec.get("message") or "").strip()
    first = message.splitlines()[0] if message else ""
    tail = [line for line in rec.get("stderr_tail") or [] if str(line).strip()]
    if tail and str(tail[-1]) not in first:  # a crashed job: its last words
        first = f"{first} ... {str(tail[-1]).strip()}"
    return {
        "run_id": rec.get("run_id"),
        "config_hash": rec.get("config_hash"),
        "status": rec.get("status"),
        "message": first,
        "exit_code": rec.get("exit_code", (rec.get("crash") or {}).get("exit_code")),
        **_provenance_columns(rec),
        "model": job.get("model"),
        "attention": _variant(job.get("attention"), model),
        "dataset": job.get("dataset"),
        "num_views": job.get("num_views"),
        "precision": job.get("precision"),
        "weights": model.get("weights"),
        "image": f"{hw[1]}x{hw[0]}" if hw else None,
        "tokens": inp.get("tokens_per_frame"),
        **timing,
        "peak_memory_gb": (rec.get("memory") or {}).get("peak_gb"),
        "memory_kind": (rec.get("memory") or {}).get("kind"),
        "tmacs": macs / 1e12 if macs else None,
        "global_attention_share": comps.get("global_attention", 0) / macs if macs else None,
        "achieved_gmacs": (macs / median / 1e9) if macs and median else None,
        "is_dense": model.get("is_dense", all(r == "global" for r in model.get("routes", ["?"]))),
        "memory_lean": model.get("memory_lean"),
        "macs": macs,
        **route_columns(rec),
        **{f"fid_{k}": v for k, v in (rec.get("metrics") or {}).get("fidelity", {}).items()},
        **_accuracy_columns(rec.get("metrics") or {}),
        "overrides": " ".join(job.get("overrides") or []),
        "finished_at": rec.get("finished_at"),
        "started_at": rec.get("started_at"),
        "_leaves": config_leaves(rec.get("config")),
    }


def _accuracy_columns(metrics: dict[str, Any]) -> dict[str, Any]:
    """A protocol run's aggregated metrics (`acc_*`), counts, the meaningful flag, and the same
    metrics against the dense parent (`fidp_*`)."""
    acc = metrics.get("accuracy")
    if not isinstance(acc, dict):
        return {}
    out = {
        "acc_meaningful": acc.get("meaningful"),
        "acc_scenes": f"{acc.get('n_ok')}/{acc.get('n_scenes')}",
        "acc_skipped": acc.get("n_skipped"),
        "acc_failed": acc.get("n_failed"),
        **{f"acc_{k}": v for k, v in acc.get("metrics", {}).items()},
    }
    fid = metrics.get("fidelity_protocol") or {}
    out.update({f"fidp_{k}": v for k, v in fid.get("metrics", {}).items()})
    return out


def _variant(attention: str | None, model: dict[str, Any]) -> str | None:
    """Name dense VGGT as the literature does: VGGT* keeps only the head layers."""
    if model.get("weights") == "ground_truth":
        return "n/a (ground-truth oracle)"
    if attention != "dense" or model.get("family") != "vggt":
        return attention
    return "dense (VGGT*)" if model.get("memory_lean", True) else "dense (all layers)"


def route_columns(rec: dict[str, Any]) -> dict[str, Any]:
    """The columns the routes name themselves, each as `ROUTE_COLUMN + label`: per-layer facts
    (`model.route_layers[i].columns`) as a layer-weighted mean, layer microbenchmark results
    (`timings.layer_benchmarks[route].columns`) as the mean over the routes that report them."""
    sums: dict[str, list[float]] = {}
    for row in (rec.get("model") or {}).get("route_layers") or []:
        first, _, last = str(row["layers"]).partition("-")
        n = int(last or first) - int(first) + 1
        for label, value in (row.get("columns") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                total = sums.setdefault(label, [0.0, 0])
                total[0] += value * n
                total[1] += n
    out = {ROUTE_COLUMN + label: s / n for label, (s, n) in sums.items()}
    benches = ((rec.get("timings") or {}).get("layer_benchmarks") or {}).values()
    values: dict[str, list[float]] = {}
    for bench in benches:
        for label, value in (bench.get("columns") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                values.setdefault(label, []).append(value)
    out.update({ROUTE_COLUMN + label: sum(v) / len(v) for label, v in values.items()})
    return out
