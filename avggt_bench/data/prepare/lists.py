"""Scene and frame lists shipped in datasets/lists/: the stride check lists (`lists` step) and π³'s
random CO3Dv2 / RealEstate10K seq-id maps, validated on import (`frame-lists` step)."""

from __future__ import annotations

import json
from pathlib import Path

from avggt_bench.data.sampling import stride, validate_frame_list
from avggt_bench.errors import DataError

SEVEN_SCENES_TEST = (
    "chess/seq-03", "chess/seq-05", "fire/seq-03", "fire/seq-04", "heads/seq-01", "office/seq-02",
    "office/seq-06", "office/seq-07", "office/seq-09", "pumpkin/seq-01", "pumpkin/seq-07",
    "redkitchen/seq-03", "redkitchen/seq-04", "redkitchen/seq-06", "redkitchen/seq-12",
    "redkitchen/seq-14", "stairs/seq-01", "stairs/seq-04",
)  # fmt: skip

STRIDE_COUNTS: dict[str, tuple[int, dict[str, int]]] = {
    # list file: (stride, frames per scene) of the released sequences (datasets/README.md)
    "seven_scenes_stride200.json": (
        200, {s: 3 if s.startswith("stairs") else 5 for s in SEVEN_SCENES_TEST}
    ),
    "seven_scenes_stride40.json": (
        40, {s: 13 if s.startswith("stairs") else 25 for s in SEVEN_SCENES_TEST}
    ),
    "nrgbd_stride500.json": (500, {
        "breakfast_room": 3, "complete_kitchen": 3, "green_room": 3, "grey_white_room": 3,
        "kitchen": 4, "morning_apartment": 2, "staircase": 3, "thin_geometry": 1, "whiteroom": 4,
    }),
    "nrgbd_stride100.json": (100, {
        "breakfast_room": 12, "complete_kitchen": 13, "green_room": 15, "grey_white_room": 15,
        "kitchen": 16, "morning_apartment": 10, "staircase": 12, "thin_geometry": 4,
        "whiteroom": 17,
    }),
    "dtu_stride5.json": (5, {f"scan{n}": 10 for n in (
        1, 4, 9, 10, 11, 12, 13, 15, 23, 24, 29, 32, 33, 34, 48, 49, 62, 75, 77, 110, 114, 118
    )}),
    "eth3d_stride5.json": (5, {
        "courtyard": 8, "delivery_area": 9, "electro": 9, "facade": 16, "kicker": 7,
        "meadow": 3, "office": 6, "pipes": 3, "playground": 8, "relief": 7, "relief_2": 7,
        "terrace": 5, "terrains": 9,
    }),
}  # fmt: skip
PI3_MAPS = {
    "co3d": ("pi3_co3d_seq_id_map.json", 2506),
    "re10k": ("pi3_re10k_seq_id_map.json", 1719),
}


def write_stride_lists(folder: Path) -> list[Path]:
    """The stride check lists (STRIDE_COUNTS) as `{scene: [0, k, ...]}` JSON files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (kf, counts) in STRIDE_COUNTS.items():
        lists = {scene: stride(kf * count, kf) for scene, count in counts.items()}
        path = folder / name
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in lists.items())
        path.write_text("{\n" + body + "\n}\n")
        out.append(path)
    return out


def import_frame_lists(sources: dict[str, Path], folder: Path) -> list[Path]:
    """Validate π³'s seq-id maps (`{"co3d": path, "re10k": path}`) and copy them to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for dataset, src in sources.items():
        name, count = PI3_MAPS[dataset]
        try:
            lists = json.loads(Path(src).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the {dataset} frame list {src}: {exc}") from exc
        if not isinstance(lists, dict):
            raise DataError(f"{src}: expected a JSON object {{sequence: [indices]}}")
        validate_frame_list(
            {str(k): list(v) for k, v in lists.items()},
            expected_sequences=count,
            expected_per_sequence=10,
            where=str(src),
        )
        dst = folder / name
        dst.write_text(json.dumps(lists) + "\n")
        out.append(dst)
    return out
