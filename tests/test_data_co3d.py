"""CO3Dv2: NDC → OpenCV through the loader, float16 depth, exclusions, seeded draws."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from avggt_bench.data import (
    SkippedScene,
    get_dataset,
    load_protocol_preset,
    plan_protocol,
    protocol_scenes,
)
from avggt_bench.data.cameras import project
from avggt_bench.data.co3d import decode_depth_png
from avggt_bench.data.prepare import main as prepare_main

HW = (30, 40)  # [H, W] as CO3D stores image.size


def viewpoint(seq_index: int, i: int) -> dict:
    rot = Rotation.from_euler("xyz", [0.1 * i, 0.05 * seq_index, 0.3]).as_matrix()
    return {
        "R": rot.tolist(),
        "T": [0.1 * i, -0.2, 5.0 + seq_index],
        "focal_length": [1.8, 1.9],
        "principal_point": [0.05, -0.03],
        "intrinsics_format": "ndc_isotropic",
    }


def write_co3d(root, sequences=None):
    """Raw CO3Dv2 layout (frame/sequence annotations, set lists, images, depth, masks)."""
    sequences = sequences or {"apple": {"110_1_1": 55, "110_1_2": 60, "110_1_3": 20}}
    for cat, seqs in sequences.items():
        frames, seq_ann, test_list = [], [], []
        for k, (seq, n) in enumerate(sorted(seqs.items())):
            seq_ann.append({"sequence_name": seq, "category": cat, "viewpoint_quality_score": 0.9})
            (root / cat / seq / "images").mkdir(parents=True)
            (root / cat / seq / "depths").mkdir()
            (root / cat / seq / "depth_masks").mkdir()
            for i in range(n):
                img = f"{cat}/{seq}/images/frame{i + 1:06d}.jpg"
                Image.fromarray(np.full((*HW, 3), i, np.uint8)).save(root / img)
                depth = np.full(HW, 2.5, np.float16)
                depth[0, 0] = 0
                Image.fromarray(depth.view(np.uint16)).save(root / f"{cat}/{seq}/depths/d{i}.png")
                mask = np.full(HW, 255, np.uint8)
                mask[1, 1] = 0
                Image.fromarray(mask).save(root / f"{cat}/{seq}/depth_masks/m{i}.png")
                frames.append(
                    {
                        "sequence_name": seq,
                        "frame_number": i + 1,
                        "image": {"path": img, "size": list(HW)},
                        "depth": {
                            "path": f"{cat}/{seq}/depths/d{i}.png",
                            "scale_adjustment": 1.5,
                            "mask_path": f"{cat}/{seq}/depth_masks/m{i}.png",
                        },
                        "viewpoint": viewpoint(k, i),
                    }
                )
                test_list.append([seq, i + 1, img])
        with gzip.open(root / cat / "frame_annotations.jgz", "wt") as f:
            json.dump(frames, f)
        with gzip.open(root / cat / "sequence_annotations.jgz", "wt") as f:
            json.dump(seq_ann, f)
        (root / cat / "set_lists").mkdir()
        (root / cat / "set_lists" / "set_lists_fewview_dev.json").write_text(
            json.dumps({"train": [], "val": [], "test": test_list})
        )


def test_depth_png_float16_bits():
    """float16 values stored as raw bits decode exactly, times scale_adjustment."""
    values = np.array([[0.0, 1.5, 2.25], [1e-3, 60000.0, 3.0]], np.float16)
    out = decode_depth_png(values.view(np.uint16), 2.0)
    np.testing.assert_array_equal(out, values.astype(np.float32) * 2)


def test_prepared_annotations_loader_geometry_and_depth(tmp_path):
    write_co3d(tmp_path)
    assert prepare_main(["co3d", "--root", str(tmp_path)]) == 0
    loader = get_dataset("co3d", tmp_path, load_depth=True)
    assert loader.sequences() == ["110_1_1", "110_1_2", "110_1_3"]
    assert loader.exclusion("110_1_3") == "too_few_frames"
    scene = loader.load("110_1_2", [7, 3])
    assert scene.frame_ids == [8, 4] and scene.category == "apple"
    assert not scene.metric and scene.native_unit == "sfm"
    vp = viewpoint(1, 7)
    rot, trans = np.array(vp["R"]), np.array(vp["T"])
    pts = np.array([[0.1, 0.2, 0.3], [-0.4, 0.1, 0.5]])
    view = pts @ rot + trans  # PyTorch3D row-vector convention
    s = min(HW) / 2
    x_ndc = 1.8 * view[:, 0] / view[:, 2] + 0.05
    y_ndc = 1.9 * view[:, 1] / view[:, 2] - 0.03
    native = np.stack((HW[1] / 2 - s * x_ndc, HW[0] / 2 - s * y_ndc), 1)
    ours, _ = project(scene.intrinsics[0].numpy(), scene.extrinsics[0].numpy(), pts)
    np.testing.assert_allclose(ours, native, atol=1e-9)
    assert scene.depth[0, 5, 5].item() == pytest.approx(2.5 * 1.5)
    assert not scene.valid[0, 0, 0] and not scene.valid[0, 1, 1] and scene.valid[0, 2, 2]


def test_vggt_protocol_exclusions_and_seeded_draws(tmp_path):
    write_co3d(
        tmp_path / "co3d",
        {
            "apple": {"a_1": 55, "a_2": 20, "a_3": 60},
            "banana": {"b_1": 52},
        },
    )
    # a broken translation (signed sum > 1e5) excludes the whole sequence before any draw
    ann = tmp_path / "co3d" / "annotations"
    assert prepare_main(["co3d", "--root", str(tmp_path / "co3d"), "--out", str(ann)]) == 0
    with gzip.open(ann / "apple_test.jgz", "rt") as f:
        data = json.load(f)
    data["a_3"][4]["T"] = [6e4, 6e4, -1.0]
    with gzip.open(ann / "apple_test.jgz", "wt") as f:
        json.dump(data, f)
    preset = load_protocol_preset("co3d_vggt", [f"paths.data={tmp_path}"])
    plan, _, _ = plan_protocol(preset)
    listed = [p for p in plan if not isinstance(p, SkippedScene)]
    skipped = {p.scene_id: p.reason for p in plan if isinstance(p, SkippedScene)}
    assert [p.scene_id for p in listed] == ["a_1", "b_1"]
    assert skipped["a_2"] == "too_few_frames" and skipped["a_3"] == "bad_translation"
    assert skipped["backpack"] == "missing_sequence"  # a category with nothing on disk
    rng = np.random.RandomState(0)
    assert listed[0].indices == rng.choice(55, 10, replace=False).tolist()
    assert listed[1].indices == rng.choice(52, 10, replace=False).tolist()
    again, _, _ = plan_protocol(preset)
    assert [p.indices for p in again if not isinstance(p, SkippedScene)] == [
        p.indices for p in listed
    ]
    # a missing image fails its sequence (fail_scene), never a silent drop
    first = listed[0]
    (
        tmp_path / "co3d" / "apple" / "a_1" / "images" / f"frame{first.indices[2] + 1:06d}.jpg"
    ).unlink()
    items = list(protocol_scenes(preset))
    by_id = {i.scene_id: i for i in items}
    assert isinstance(by_id["a_1"], SkippedScene) and by_id["a_1"].reason == "missing_file"
    assert by_id["b_1"].frame_indices == listed[1].indices  # drawn order is the feeding order
