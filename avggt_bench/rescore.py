"""Re-score saved predictions without a model: every metric of every job that kept them.

    python -m avggt_bench.rescore results/runs/<machine>/records [--out DIR] [--only RUN_ID]

For each record with a `<run_id>.predictions/` folder (a job run with `predictions.save=true`)
the preset's ground truth is loaded again (same frames: checked against the saved frame list), the
saved predictions are scored with the current metric code, and a new record is written to
`--out` (default: `rescored/` beside the records folder) that says `rescored from <original>`,
the metric code's version and whether the inputs were exact (float32 maps: a re-score with
unchanged code reproduces the original metrics bit for bit; float16 maps: close). Timings,
memory and cost stay those of the original run, which measured them.

An accelerated job's fidelity to its dense parent is re-scored too when the dense job of the same
configuration (same record folder, same config but the attention) saved its predictions.
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avggt_bench.errors import AvggtError, DataError
from avggt_bench.records import now_iso, read_record, write_json
from avggt_bench.records.replay import RecordScenes, check_frames, dense_parent
from avggt_bench.records.saved_predictions import SavedScene, load_scene, saved_scenes

log = logging.getLogger("avggt_bench.rescore")
RUN_FAILURES = ("error", "oom")


@dataclass
class Rescored:
    """What re-scoring one record gave: the new record and how it compares with the original."""

    source: Path
    out: Path | None
    scenes: int
    missing: list[str] = field(default_factory=list)
    changed: dict[str, tuple[float, float]] = field(default_factory=dict)
    exact: bool = True
    fidelity_parent: str | None = None
    message: str = ""


def rescore_record(
    path: Path, out_dir: Path, records: dict[Path, dict[str, Any]] | None = None
) -> Rescored:
    """Re-score one record's saved scenes; writes the new record to `out_dir`."""
    from avggt_bench.metrics.evaluate import (
        SceneResult,
        aggregate,
        evaluate_scene,
    )
    from avggt_bench.metrics.geometry import MetricError
    from avggt_bench.metrics.version import metrics_code_version
    from avggt_bench.progress import progress

    record = read_record(path)
    files = saved_scenes(path)
    outcome = Rescored(source=path, out=None, scenes=0)
    if not files:
        raise DataError(f"{path.name}: no saved predictions (run it with predictions.save=true)")
    if "accuracy" not in record.get("metrics", {}):
        return _rescore_scene_job(path, record, files, out_dir, records or {}, outcome)
    gt = RecordScenes(record)
    original = record.get("metrics", {}).get("accuracy", {})
    parent_path = dense_parent(path, record, records or {})
    parent_files = saved_scenes(parent_path) if parent_path else {}
    outcome.fidelity_parent = parent_path.name if parent_path else None
    rows = {str(r.get("scene_id")): r for r in record.get("scenes", [])}
    new = copy.deepcopy(record)
    new["scenes"] = []
    results: list[Any] = []
    fid_results: list[Any] = []
    bar = progress(total=len(rows) or None, desc=f"rescore {record['run_id']}", unit="scene")
    try:
        for item in gt.items():
            bar.update(1)
            sid = str(item.scene_id)
            row = copy.deepcopy(rows.get(sid, {"scene_id": sid}))
            if not hasattr(item, "images") or row.get("status") in RUN_FAILURES:
                results.append(_as_result(item, row, SceneResult))
                new["scenes"].append(row)
                continue
            if sid not in files:
                outcome.missing.append(sid)
                row["rescore"] = "not re-scored: no saved predictions"
                new["scenes"].append(row)
                continue
            saved = load_scene(files[sid])
            check_frames(saved, item)
            outcome.exact &= saved.exact
            result = evaluate_scene(saved.predictions, item, gt.protocol, gt.transforms(item))
            results.append(result)
            row.update(result.as_dict())
            row["metrics_s"] = sum(result.timings.values())
            if sid in parent_files:
                dense = load_scene(parent_files[sid])
                outcome.exact &= dense.exact
                fid = _fidelity(saved, dense, item, gt, evaluate_scene)
                fid_results.append(fid)
                row["fidelity"] = {"status": fid.status, "message": fid.message, **fid.metrics}
                row["fidelity_to_dense"] = compact_fidelity(saved, dense, record)
            outcome.scenes += 1
            new["scenes"].append(row)
    except MetricError as exc:
        raise DataError(f"{path.name}: {exc}") from exc
    finally:
        bar.close()
    summary = aggregate(
        results,
        gt.protocol,
        meaningful=bool(original.get("meaningful", True)),
        note=str(original.get("note", "")),
    )
    new["metrics"]["accuracy"] = summary
    outcome.changed = _changes(original.get("metrics", {}), summary.get("metrics", {}))
    if fid_results:
        fid_summary = aggregate(fid_results, gt.fidelity_protocol)
        new["metrics"]["fidelity_protocol"] = fid_summary
        was = record.get("metrics", {}).get("fidelity_protocol", {}).get("metrics", {})
        for key, pair in _changes(was, fid_summary.get("metrics", {})).items():
            outcome.changed[f"fidelity {key}"] = pair
    if outcome.missing:
        new["status"] = "partial"
        new["message"] = (
            f"re-scored {outcome.scenes} scenes; {len(outcome.missing)} had no saved predictions: "
            + ", ".join(outcome.missing[:5])
        )
    new["rescored"] = {
        "from": str(path),
        "at": now_iso(),
        "metrics_code": metrics_code_version(),
        "original_metrics_code": record.get("provenance", {}).get("metrics_code"),
        "exact_inputs": outcome.exact,
        "map_dtype": "float32" if outcome.exact else "float16",
        "scenes_rescored": outcome.scenes,
        "scenes_missing": outcome.missing,
        "fidelity_parent": outcome.fidelity_parent,
        "timings": "from the original run (re-scoring runs no model)",
    }
    outcome.out = write_json(new, Path(out_dir) / path.name)
    return outcome


def _rescore_scene_job(
    path: Path,
    record: dict[str, Any],
    files: dict[str, Path],
    out_dir: Path,
    records: dict[Path, dict[str, Any]],
    outcome: Rescored,
) -> Rescored:
    """A single-scene (timing) job has no ground truth: its fidelity to the dense parent is
    what can be re-scored, from the two saved prediction sets."""
    from avggt_bench.metrics.version import metrics_code_version

    new = copy.deepcopy(record)
    parent_path = dense_parent(path, record, records)
    parent_files = saved_scenes(parent_path) if parent_path else {}
    [(sid, file)] = list(files.items())
    outcome.fidelity_parent = parent_path.name if parent_path else None
    if sid in parent_files:
        saved, dense = load_scene(file), load_scene(parent_files[sid])
        outcome.exact = saved.exact and dense.exact
        fid = compact_fidelity(saved, dense, record)
        outcome.changed = _changes(record.get("metrics", {}).get("fidelity") or {}, fid)
        new["metrics"]["fidelity"] = fid
        new["metrics"]["fidelity_reference"] = f"rescored from {parent_path.name}"
        outcome.scenes = 1
    else:
        outcome.missing.append(sid)
    new["rescored"] = {
        "from": str(path),
        "at": now_iso(),
        "metrics_code": metrics_code_version(),
        "exact_inputs": outcome.exact,
        "scenes_rescored": outcome.scenes,
        "fidelity_parent": outcome.fidelity_parent,
        "note": "single-scene job: only the fidelity to the dense parent is re-scorable"
        + ("" if outcome.scenes else " (no dense parent with saved predictions: unchanged)"),
        "timings": "from the original run (re-scoring runs no model)",
    }
    outcome.out = write_json(new, Path(out_dir) / path.name)
    return outcome


def _as_result(item: Any, row: dict[str, Any], scene_result: type) -> Any:
    """A scene that was not evaluated in the run: the same status again."""
    if row.get("status") in RUN_FAILURES:
        return scene_result(
            str(item.scene_id),
            row.get("dataset", ""),
            None,
            status=row["status"],
            message=row.get("message", ""),
        )
    return item


def compact_fidelity(saved: SavedScene, dense: SavedScene, record: dict[str, Any]) -> dict:
    """The job's `fidelity_to_dense` (cameras and subsampled maps) from two saved sets."""
    from avggt_bench.metrics.fidelity import Reference, fidelity

    family = record.get("model", {}).get("family") or saved.meta.get("family") or "vggt"
    return fidelity(
        Reference.from_predictions(saved.predictions),
        Reference.from_predictions(dense.predictions),
        pair_order=family,
    )


def _fidelity(saved, dense, scene, gt: RecordScenes, evaluate_scene) -> Any:
    """The preset's metrics of the variant against its dense parent's saved predictions (the
    same functions as the job)."""
    from avggt_bench.metrics.evaluate import SceneResult, parent_as_ground_truth
    from avggt_bench.metrics.geometry import MetricError

    try:
        parent = parent_as_ground_truth(dense.predictions, scene)
        return evaluate_scene(saved.predictions, parent, gt.fidelity_protocol, None)
    except MetricError as exc:
        fid = SceneResult(scene.scene_id, scene.dataset, gt.protocol.task, status=exc.status)
        fid.message = str(exc)
        return fid


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Metrics whose value differs (bit for bit) between the original and the re-score."""
    changed = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        same = a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)
        if not same:
            changed[key] = (a, b)
    return changed


def rescore_folder(
    folder: Path, out_dir: Path | None = None, only: list[str] | None = None
) -> list[Rescored]:
    """Re-score every record in `folder` that saved predictions; failures are reported per
    record (one bad record does not stop the others)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(
            f"{folder} is not a folder of records (e.g. results/runs/<machine>/records)"
        )
    out_dir = Path(out_dir) if out_dir else folder.parent / "rescored"
    records = {}
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            records[path] = read_record(path)
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable record, skipped (%s)", path.name, exc)
    todo = [p for p in records if saved_scenes(p) and (not only or records[p]["run_id"] in only)]
    if not todo:
        raise DataError(
            f"no record in {folder} has saved predictions; run jobs with predictions.save=true "
            "(e.g. make run ARGS='dataset=synthetic_sparse predictions.save=true')"
        )
    outcomes = []
    for path in todo:
        try:
            outcomes.append(rescore_record(path, out_dir, records))
        except (AvggtError, OSError) as exc:
            outcomes.append(Rescored(source=path, out=None, scenes=0, message=str(exc)))
    return outcomes


def summary_table(outcomes: list[Rescored]) -> str:
    """One line per record: scenes, exactness, which metrics changed."""
    from tabulate import tabulate

    rows = []
    for o in outcomes:
        if o.out is None:
            verdict = f"FAILED: {o.message}"
        elif not o.changed:
            verdict = "all metrics unchanged"
        else:
            verdict = "; ".join(f"{k} {_fmt(a)} -> {_fmt(b)}" for k, (a, b) in o.changed.items())
        rows.append(
            [
                o.source.stem[:60],
                o.scenes,
                len(o.missing),
                "float32 (exact)" if o.exact else "float16",
                o.fidelity_parent or "-",
                verdict[:120],
            ]
        )
    head = ["record", "scenes", "missing", "maps", "dense parent", "metrics vs original"]
    return tabulate(rows, headers=head, tablefmt="github")


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m avggt_bench.rescore", description=__doc__)
    parser.add_argument("records", type=Path, help="a folder of records (with saved predictions)")
    parser.add_argument("--out", type=Path, default=None, help="default: <records>/../rescored")
    parser.add_argument("--only", nargs="*", default=None, help="run ids to re-score")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        outcomes = rescore_folder(args.records, args.out, args.only)
    except AvggtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_table(outcomes))
    written = [o for o in outcomes if o.out is not None]
    if written:
        print(f"\n{len(written)} re-scored records in {written[0].out.parent}")
    return 0 if len(written) == len(outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["RecordScenes", "Rescored", "dense_parent", "main", "rescore_folder", "rescore_record"]
