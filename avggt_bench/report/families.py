"""Which saved predictions the report's page puts side by side: protocol records grouped into
families, a dense job first and then the accelerated jobs of the same configuration (the dense
parent of `records/replay.py::dense_parent`), with notes on records that cannot be shown."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avggt_bench.errors import DataError
from avggt_bench.records import read_record
from avggt_bench.records.replay import dense_parent
from avggt_bench.records.saved_predictions import predictions_dir, saved_scenes


@dataclass
class Member:
    """One job of a family: its record, label and saved scenes (scene id -> .npz)."""

    path: Path
    record: dict[str, Any]
    label: str
    files: dict[str, Path]


@dataclass
class Family:
    """A dense job and the accelerated jobs of the same configuration (dense first)."""

    title: str
    members: list[Member]
    notes: list[str] = field(default_factory=list)

    @property
    def scene_ids(self) -> list[str]:
        """Scenes with saved predictions in any member, in the first record's scene order."""
        order = [str(s.get("scene_id")) for s in self.members[0].record.get("scenes", [])]
        saved = {sid for m in self.members for sid in m.files}
        return [s for s in order if s in saved] + sorted(saved - set(order))


def _is_protocol(record: dict[str, Any]) -> bool:
    return "accuracy" in record.get("metrics", {})


def _title(record: dict[str, Any]) -> str:
    cfg = record.get("config", {})
    preset = (cfg.get("dataset") or {}).get("name", "?")
    model = (record.get("model") or {}).get("preset", "?")
    machine = (record.get("job") or {}).get("machine", "?")
    views = cfg.get("num_views")
    return f"{preset} · {model} · {machine}" + (f" · {views} views" if views else "")


def _saved(path: Path, notes: list[str]) -> dict[str, Path]:
    """Scene id -> file of a record; when a file's metadata is unreadable, every file by its
    name (the scene whose file is broken then says so in its own place)."""
    try:
        return saved_scenes(path)
    except DataError as exc:
        notes.append(f"{path.name}: {exc}")
        folder = predictions_dir(path)
        return {p.stem: p for p in sorted(folder.glob("*.npz")) if not p.name.startswith(".")}


def families(
    paths: list[Path], labels: dict[Path, str] | None = None
) -> tuple[list[Family], list[str]]:
    """Group the protocol records among `paths` into families; also notes on records that
    cannot be shown (unreadable, no saved predictions)."""
    labels = labels or {}
    records: dict[Path, dict[str, Any]] = {}
    notes: list[str] = []
    for path in dict.fromkeys(Path(p) for p in paths):
        try:
            records[path] = read_record(path)
        except (OSError, ValueError) as exc:
            notes.append(f"{path.name}: unreadable record ({exc})")
    members: dict[Path, Member] = {}
    for path, record in records.items():
        if not _is_protocol(record):
            continue
        files = _saved(path, notes)
        label = labels.get(path) or str(record.get("run_id", path.stem))
        members[path] = Member(path, record, label, files)
    groups: dict[Path, Family] = {}
    for path, member in members.items():
        if member.record.get("model", {}).get("is_dense", False):
            groups.setdefault(path, Family(_title(member.record), []))
            groups[path].members.insert(0, member)
            continue
        parent = dense_parent(path, member.record, records)
        if parent is None or parent not in members:
            groups[path] = Family(_title(member.record), [member])
            groups[path].notes.append(
                f"{member.label}: no dense job of the same configuration among these records"
            )
            continue
        groups.setdefault(parent, Family(_title(member.record), [])).members.append(member)
    out = []
    for family in groups.values():
        family.members.sort(key=lambda m: not m.record.get("model", {}).get("is_dense", False))
        for m in family.members:
            if not m.files:
                family.notes.append(
                    f"{m.label} ({m.path.name}) saved no predictions: rerun it with "
                    "predictions.save=true to see it here"
                )
        out.append(family)
    return out, notes


__all__ = ["Family", "Member", "families"]
