"""TUM RGB-D: timestamp matching, scalar-last quaternions, the 90-frame subset."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from avggt_bench.data import get_dataset, load_protocol_preset, protocol_scenes
from avggt_bench.data.cameras import project
from avggt_bench.data.prepare import main as prepare_main
from avggt_bench.data.tum import associate
from avggt_bench.errors import DataError

SEQ = "rgbd_dataset_freiburg3_walking_xyz"


def test_association_is_greedy_unique_and_sorted():
    """Candidates within 0.02 s, smallest difference first, each stamp used once."""
    rgb = [1.000, 1.010, 1.050, 2.000]
    gt = [1.005, 1.012, 1.049, 1.9, 3.0]
    # 1.010 is nearest to 1.012 (0.002) and also close to 1.005 (0.005); 1.000 then takes 1.005
    assert associate(rgb, gt) == [(1.000, 1.005), (1.010, 1.012), (1.050, 1.049)]
    # competing: two rgb stamps want one gt stamp; the closer wins, the other finds nothing
    assert associate([5.0, 5.011], [5.009]) == [(5.011, 5.009)]
    assert associate([0.0], [0.02]) == []  # strict inequality


def write_sequence(root, n=300, rng_seed=0):
    folder = root / SEQ
    (folder / "rgb").mkdir(parents=True)
    rng = np.random.default_rng(rng_seed)
    rgb_lines = ["# color images", "# file: 'x.bag'", "# timestamp filename"]
    gt_lines = ["# ground truth trajectory", "# timestamp tx ty tz qx qy qz qw"]
    for i in range(n):
        t = 1305031102.0 + i / 30
        name = f"rgb/{t:.6f}.png"
        Image.fromarray(np.full((4, 6, 3), i % 256, np.uint8)).save(folder / name)
        rgb_lines.append(f"{t:.6f} {name}")
        for k in range(3):  # motion capture at ~100 Hz, slightly offset
            tg = t + 0.0033 * k + 0.001
            q = Rotation.from_euler("xyz", [0.01 * i, 0.2, -0.1]).as_quat()  # x y z w
            q = q * (1 if rng.random() < 0.5 else -1)  # sign must not matter
            vals = [0.01 * i, 0.5, -1.0, *q]
            gt_lines.append(f"{tg:.4f} " + " ".join(f"{v:.9f}" for v in vals))
    (folder / "rgb.txt").write_text("\n".join(rgb_lines) + "\n")
    (folder / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n")
    return folder


def test_protocol_selection_geometry_and_prepared_subset(tmp_path):
    write_sequence(tmp_path / "tum")
    loader = get_dataset("tum", tmp_path / "tum")
    assert loader.num_frames(SEQ) == 300
    preset = load_protocol_preset("tum_dynamics_cut3r", [f"paths.data={tmp_path}"])
    items = list(protocol_scenes(preset))
    scenes = [i for i in items if not hasattr(i, "reason")]
    assert len(items) == 8 and len(scenes) == 1  # the other 7 sequences are missing, counted
    scene = scenes[0]
    assert scene.frame_indices == list(range(0, 268, 3)) and scene.num_views == 90
    assert scene.timestamps[1] == pytest.approx(1305031102.0 + 3 / 30 + 0.001, abs=1e-4)
    # geometry: the groundtruth line is c2w with a scalar-last quaternion
    q = Rotation.from_euler("xyz", [0.03, 0.2, -0.1])
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = q.as_matrix(), [0.03, 0.5, -1.0]
    x_world = c2w[:3, :3] @ np.array([0.1, -0.2, 2.0]) + c2w[:3, 3]
    cam = np.linalg.inv(c2w) @ np.append(x_world, 1)
    k_fr3 = np.array([[535.4, 0, 320.1], [0, 539.2, 247.6], [0, 0, 1]])  # TUM calibration, fr3
    native = k_fr3 @ cam[:3]
    uv, _ = project(scene.intrinsics[1].numpy(), scene.extrinsics[1].numpy(), x_world)
    np.testing.assert_allclose(uv[0], native[:2] / native[2], atol=1e-6)
    # the prepared subset holds exactly the protocol's frames; a wrong copy is refused
    assert prepare_main(["tum", "--root", str(tmp_path / "tum")]) == 0
    subset = tmp_path / "tum" / SEQ / "rgb_90"
    assert sorted(p.name for p in subset.iterdir()) == sorted(
        p.split("/")[-1] for p in scene.image_paths
    )
    assert len((tmp_path / "tum" / SEQ / "groundtruth_90.txt").read_text().splitlines()) == 90
    next(iter(subset.iterdir())).rename(subset / "0000000000.000000.png")
    with pytest.raises(DataError, match="other frames"):
        loader.load(SEQ, scene.frame_indices)
