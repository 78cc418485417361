"""MPI Sintel: tagged binary `.cam` / `.dpt` files, final pass, scene units.
Fixtures are written byte by byte in Sintel's format (float32 tag 202021.25, little-endian)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from avggt_bench.data import get_dataset
from avggt_bench.data.cameras import project
from avggt_bench.data.readers import read_sintel_cam, read_sintel_dpt
from avggt_bench.errors import DataError

TAG = 202021.25
W, H = 16, 8
SEQ = "alley_2"


def cam_bytes(m: np.ndarray, n: np.ndarray, tag: float = TAG) -> bytes:
    """Sintel's cam_write: the tag, M (3×3 intrinsics) then N (3×4 extrinsics), row-major f8."""
    return (
        struct.pack("<f", tag)
        + struct.pack("<9d", *m.reshape(-1))
        + struct.pack("<12d", *n.reshape(-1))
    )


def dpt_bytes(depth: np.ndarray, tag: float = TAG) -> bytes:
    h, w = depth.shape
    return struct.pack("<fii", tag, w, h) + depth.astype("<f4").tobytes()


def intrinsics_of(i: int) -> np.ndarray:
    return np.array([[20.0 + i, 0.0, 7.25], [0.0, 21.5, 3.75], [0.0, 0.0, 1.0]])


def extrinsics_of(i: int) -> np.ndarray:
    rot = Rotation.from_euler("zyx", [0.1 * i, -0.3, 0.2]).as_matrix()
    return np.concatenate((rot, [[0.5 * i], [-1.25], [3.0]]), 1)


def write_sequence(root, n=4, seq=SEQ):
    base = root / "training"
    for sub in ("final", "clean", "depth", "camdata_left"):
        (base / sub / seq).mkdir(parents=True)
    for i in range(1, n + 1):
        name = f"frame_{i:04d}"
        Image.fromarray(np.full((H, W, 3), 10 * i, np.uint8)).save(
            base / "final" / seq / f"{name}.png"
        )
        d = np.full((H, W), 7.5 + i, np.float32)
        d[0, 0], d[1, 1], d[2, 2] = 0.0, np.inf, -2.0
        (base / "depth" / seq / f"{name}.dpt").write_bytes(dpt_bytes(d))
        m, e = intrinsics_of(i), extrinsics_of(i)
        (base / "camdata_left" / seq / f"{name}.cam").write_bytes(cam_bytes(m, e))
    return base


def test_cam_and_dpt_round_trip_and_tag_check(tmp_path):
    """Values written with the tag come back exactly; a wrong tag raises."""
    m, e = intrinsics_of(2), extrinsics_of(2)
    (tmp_path / "a.cam").write_bytes(cam_bytes(m, e))
    k, w2c = read_sintel_cam(tmp_path / "a.cam")
    np.testing.assert_array_equal(k, m)
    np.testing.assert_array_equal(w2c, e)
    depth = np.arange(W * H, dtype=np.float32).reshape(H, W) / 7
    (tmp_path / "a.dpt").write_bytes(dpt_bytes(depth))
    np.testing.assert_array_equal(read_sintel_dpt(tmp_path / "a.dpt"), depth)
    (tmp_path / "b.cam").write_bytes(cam_bytes(m, e, tag=1.0))
    with pytest.raises(DataError, match="not the Sintel tag"):
        read_sintel_cam(tmp_path / "b.cam")
    (tmp_path / "b.dpt").write_bytes(dpt_bytes(depth, tag=123.0))
    with pytest.raises(DataError, match="not the Sintel tag"):
        read_sintel_dpt(tmp_path / "b.dpt")
    (tmp_path / "c.dpt").write_bytes(dpt_bytes(depth)[:-4])  # truncated
    with pytest.raises(DataError, match="header says"):
        read_sintel_dpt(tmp_path / "c.dpt")


def test_loader_geometry_depth_and_bad_files(tmp_path):
    base = write_sequence(tmp_path)
    loader = get_dataset("sintel", tmp_path, load_depth=True)
    assert loader.sequences() == [SEQ]
    scene = loader.load(SEQ, [3, 1])
    assert scene.frame_ids == ["frame_0004", "frame_0002"] and scene.timestamps == [4.0, 2.0]
    assert not scene.metric and scene.native_unit == "scene"
    # native: pixel = M · (N · [X, 1]) dehomogenised, N the world-to-camera 3×4
    x_world = np.array([[0.4, -0.3, 6.0], [1.0, 0.5, 9.0]])
    m, n = intrinsics_of(4), extrinsics_of(4)
    hom = (m @ (n[:, :3] @ x_world.T + n[:, 3:])).T
    uv, _ = project(scene.intrinsics[0].numpy(), scene.extrinsics[0].numpy(), x_world)
    np.testing.assert_allclose(uv, hom[:, :2] / hom[:, 2:], atol=1e-9)
    valid = scene.valid[1].numpy()
    assert scene.depth[1, 5, 5].item() == 9.5
    assert not valid[0, 0] and not valid[1, 1] and not valid[2, 2] and valid.sum() == W * H - 3
    # a camera file with a wrong tag and a truncated depth file drop their frames, with reasons
    (base / "camdata_left" / SEQ / "frame_0001.cam").write_bytes(
        cam_bytes(intrinsics_of(1), extrinsics_of(1), tag=0.0)
    )
    (base / "depth" / SEQ / "frame_0003.dpt").write_bytes(b"PIEH")
    scene = loader.load(SEQ)
    assert scene.frame_ids == ["frame_0002", "frame_0004"]
    assert dict(scene.dropped) == {"frame_0001": "corrupt_camera", "frame_0003": "corrupt_depth"}
    with pytest.raises(DataError, match="MPI Sintel"):
        get_dataset("sintel", tmp_path / "missing")
