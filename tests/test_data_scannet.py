"""ScanNet SensReader export: invalid poses, even_first vs fixed 90-frame grid, mesh."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image

from avggt_bench.data import SkippedScene, get_dataset, protocol_scenes
from avggt_bench.data.cameras import project
from avggt_bench.data.presets import Preset
from avggt_bench.data.readers import read_ply_vertices

K_COLOR = np.array([[1169.6, 0, 647.3, 0], [0, 1167.1, 483.7, 0], [0, 0, 1, 0], [0, 0, 0, 1]])


def pose(i: int) -> np.ndarray:
    """A c2w whose rotation is exactly orthonormal in 6 decimals (3-4-5 and 7-24-25 triangles),
    so that the generic and the closed-form inverse agree; real exports are orthonormal only to
    about 1e-6, which test_data_cameras covers."""
    rz = np.array([[0.6, -0.8, 0], [0.8, 0.6, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, 0.28, -0.96], [0, 0.96, 0.28]])
    c2w = np.eye(4)
    c2w[:3, :3] = rz @ rx if i % 2 else rx @ rz
    c2w[:3, 3] = [1.0 + 0.01 * i, 2.0, 1.5]
    return c2w


def write_scene(root, name="scene0707_00", n=12, bad=(), hw=(24, 32)):
    folder = root / name
    for sub in ("color", "depth", "pose", "intrinsic"):
        (folder / sub).mkdir(parents=True)
    np.savetxt(folder / "intrinsic" / "intrinsic_color.txt", K_COLOR, fmt="%f")
    np.savetxt(folder / "intrinsic" / "intrinsic_depth.txt", np.eye(4), fmt="%f")
    for i in range(n):
        Image.fromarray(np.full((*hw, 3), i, np.uint8)).save(folder / "color" / f"{i}.jpg")
        Image.fromarray(np.full((6, 8), 1000, np.uint16)).save(folder / "depth" / f"{i}.png")
        p = pose(i)
        text = "\n".join(" ".join(f"{v:f}" for v in r) for r in p)
        if i in bad:
            text = "\n".join(["-inf -inf -inf -inf"] * 4)
        (folder / "pose" / f"{i}.txt").write_text(text + "\n")
    return folder


def test_geometry_and_colour_intrinsics_rescale(tmp_path):
    write_scene(tmp_path, hw=(968, 1296), n=3)
    scene = get_dataset("scannet", tmp_path).load("scene0707_00", [2])
    np.testing.assert_array_equal(scene.intrinsics[0].numpy(), K_COLOR[:3, :3])
    x_world = np.array([1.2, 2.3, 3.9])
    cam = np.linalg.inv(pose(2)) @ np.append(x_world, 1)
    native = K_COLOR[:3, :3] @ cam[:3]
    uv, _ = project(scene.intrinsics[0].numpy(), scene.extrinsics[0].numpy(), x_world)
    np.testing.assert_allclose(uv[0], native[:2] / native[2], atol=1e-9)
    # an export with 640x480 colour: K follows the half-pixel resize rule
    write_scene(tmp_path, "scene0708_00", hw=(484, 648), n=1)
    small = get_dataset("scannet", tmp_path).load("scene0708_00")
    assert small.intrinsics[0, 0, 0].item() == pytest.approx(1169.6 * 0.5)
    assert small.intrinsics[0, 0, 2].item() == pytest.approx(0.5 * (647.3 + 0.5) - 0.5)


def test_inf_pose_before_selection_or_dropped_from_the_grid(tmp_path):
    """-inf marks a frame invalid; even_first excludes it before selection; the fixed grid
    drops it and records it."""
    write_scene(tmp_path, n=12, bad=(3,))
    loader = get_dataset("scannet", tmp_path)
    assert loader.frame_validity("scene0707_00")[3] is False
    base = {
        "name": "t",
        "task": "trajectory",
        "dataset": "scannet",
        "root": str(tmp_path),
        "scenes": ["scene0707_00", "scene9999_00"],
        "metrics": ["ate"],
        "alignment": {"type": "sim3"},
    }
    even = Preset.from_mapping({**base, "sampling": {"strategy": "even_first", "n": 5}})
    scene, missing = list(protocol_scenes(even))
    assert 3 not in scene.frame_ids and scene.num_views == 5 and scene.dropped == []
    assert isinstance(missing, SkippedScene) and missing.reason == "missing_sequence"
    grid = Preset.from_mapping(
        {**base, "sampling": {"strategy": "first_n_stride", "stride": 3, "n": 90}}
    )
    scene = next(protocol_scenes(grid))
    assert scene.frame_ids == [0, 6, 9] and scene.dropped == [(3, "inf_pose")]


def test_mesh_vertices_are_reference_points(tmp_path):
    write_scene(tmp_path, n=2)
    verts = np.array([[0.0, 1.0, 2.0], [3.5, -1.0, 0.25], [1e-3, 2e3, -7.0]])
    header = (
        "ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\n"
        "property float y\nproperty float z\nproperty uchar red\nproperty uchar green\n"
        "property uchar blue\nproperty uchar alpha\nelement face 0\n"
        "property list uchar int vertex_indices\nend_header\n"
    )
    body = b"".join(struct.pack("<fffBBBB", *v, 1, 2, 3, 255) for v in verts)
    ply = tmp_path / "scene0707_00" / "scene0707_00_vh_clean_2.ply"
    ply.write_bytes(header.encode() + body)
    np.testing.assert_allclose(read_ply_vertices(ply), verts.astype(np.float32))
    scene = get_dataset("scannet", tmp_path, load_points=True).load("scene0707_00")
    assert scene.points.shape == (3, 3)
    ascii_ply = tmp_path / "a.ply"
    ascii_ply.write_text(
        "ply\nformat ascii 1.0\nelement vertex 2\nproperty double x\nproperty double y\n"
        "property double z\nend_header\n1 2 3\n4 5 6\n"
    )
    np.testing.assert_array_equal(read_ply_vertices(ascii_ply), [[1, 2, 3], [4, 5, 6]])
