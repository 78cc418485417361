"""RealEstate10K: normalised intrinsics, w2c rows, missing frames."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from avggt_bench.data import SkippedScene, get_dataset, load_protocol_preset, protocol_scenes
from avggt_bench.data.cameras import project
from avggt_bench.errors import DataError

SEQ = "0a1b2c3d4e5f6789"


def camera_line(i: int) -> tuple[str, np.ndarray]:
    rot = Rotation.from_euler("xyz", [0.01 * i, 0.02, -0.03]).as_matrix()
    w2c = np.concatenate((rot, np.array([[0.001 * i], [0.002], [-0.01]])), 1)
    nums = [53353333 + 33367 * i, 0.51, 0.91, 0.5, 0.49, 0, 0, *w2c.reshape(-1)]
    return " ".join(str(v) if isinstance(v, int) else f"{v:.17g}" for v in nums), w2c


def write_sequence(root, seq=SEQ, n=12, images=None, hw=(36, 64)):
    (root / "metadata" / "test").mkdir(parents=True, exist_ok=True)
    lines = ["https://www.youtube.com/watch?v=abcdefghijk"]
    for i in range(n):
        lines.append(camera_line(i)[0])
    (root / "metadata" / "test" / f"{seq}.txt").write_text("\n".join(lines) + "\n")
    (root / seq / "images").mkdir(parents=True)
    for i in range(n if images is None else images):
        Image.fromarray(np.full((*hw, 3), i, np.uint8)).save(root / seq / "images" / f"{i:04d}.png")


def test_camera_line_gives_k_and_w2c_exactly(tmp_path):
    """K = [[W·fx, 0, W·cx], [0, H·fy, H·cy], [0, 0, 1]]; the 12 numbers are the w2c."""
    write_sequence(tmp_path)
    scene = get_dataset("re10k", tmp_path).load(SEQ, [5])
    h, w = 36, 64
    np.testing.assert_array_equal(
        scene.intrinsics[0].numpy(), [[w * 0.51, 0, w * 0.5], [0, h * 0.91, h * 0.49], [0, 0, 1]]
    )
    w2c = camera_line(5)[1]
    np.testing.assert_array_equal(scene.extrinsics[0].numpy(), w2c)
    assert scene.frame_ids == [53353333 + 5 * 33367] and scene.timestamps[0] == pytest.approx(
        (53353333 + 5 * 33367) / 1e6
    )
    x = np.array([0.3, -0.1, 2.0])
    cam = w2c[:, :3] @ x + w2c[:, 3]
    native = [w * (0.51 * cam[0] / cam[2] + 0.5), h * (0.91 * cam[1] / cam[2] + 0.49)]
    uv, _ = project(scene.intrinsics[0].numpy(), scene.extrinsics[0].numpy(), x)
    np.testing.assert_allclose(uv[0], native, atol=1e-9)
    assert not scene.metric and scene.native_unit == "slam"


def test_pi3_map_protocol_with_missing_frames_and_absent_ids(tmp_path):
    root = tmp_path / "re10k"
    write_sequence(root)
    write_sequence(root, "ffffffffffffffff", n=12, images=10)  # partial extraction
    lists = tmp_path / "lists"
    lists.mkdir()
    frame_map = {SEQ: [9, 2, 5], "ffffffffffffffff": [0, 1, 2], "1111111111111111": [0, 1, 2]}
    (lists / "map.json").write_text(json.dumps(frame_map))
    preset = load_protocol_preset(
        "re10k_pi3", [f"paths.data={tmp_path}", f"dataset.sampling.file={lists / 'map.json'}"]
    )
    items = list(protocol_scenes(preset))
    assert [i.scene_id for i in items] == list(frame_map)
    scene, partial, absent = items
    assert scene.frame_indices == [9, 2, 5]  # map order is the feeding order
    assert isinstance(partial, SkippedScene) and partial.reason == "missing_frames"
    assert isinstance(absent, SkippedScene) and absent.reason == "missing_sequence"


def test_missing_camera_folder(tmp_path):
    tmp_path.joinpath("re10k").mkdir()
    loader = get_dataset("re10k", tmp_path / "re10k")
    with pytest.raises(DataError, match="metadata/test"):
        loader.sequences()
