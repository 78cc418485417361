"""CO3Dv2: the pose-evaluation annotations `<category>_<split>.jgz` from the raw files."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from avggt_bench.errors import DataError


def build_co3d_annotations(
    root: Path, out: Path, categories: Sequence[str] | None = None
) -> list[Path]:
    """`<category>_{train,test}.jgz` from set lists and frame annotations.

    Sequences with `viewpoint_quality_score` ≤ 0.5 are left out; the frames of the `fewview_dev`
    set list keep their order (datasets/README.md, section 'CO3Dv2').
    """
    out.mkdir(parents=True, exist_ok=True)
    cats = categories or sorted(p.parent.name for p in root.glob("*/frame_annotations.jgz"))
    if not cats:
        raise DataError(f"no <category>/frame_annotations.jgz under {root}; unpack CO3Dv2 there")
    written = []
    for cat in cats:
        folder = root / cat
        with gzip.open(folder / "frame_annotations.jgz", "rt") as f:
            frames = {(fa["sequence_name"], fa["frame_number"]): fa for fa in json.load(f)}
        with gzip.open(folder / "sequence_annotations.jgz", "rt") as f:
            good = {s["sequence_name"] for s in json.load(f) if s["viewpoint_quality_score"] > 0.5}
        set_lists = json.loads((folder / "set_lists" / "set_lists_fewview_dev.json").read_text())
        for split in ("train", "test"):
            data: dict[str, list[dict[str, Any]]] = {}
            for seq, frame_number, image_path in set_lists.get(split, []):
                if seq not in good:
                    continue
                vp = frames[(seq, frame_number)]["viewpoint"]
                data.setdefault(seq, []).append(
                    {
                        "filepath": image_path,
                        "R": vp["R"],
                        "T": vp["T"],
                        "focal_length": vp["focal_length"],
                        "principal_point": vp["principal_point"],
                    }
                )
            path = out / f"{cat}_{split}.jgz"
            with gzip.open(path, "wt") as f:
                json.dump(data, f)
            written.append(path)
    return written
