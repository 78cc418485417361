"""DTU (Spann3R preparation): MVSNet cams, mm → m, eroded masks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from avggt_bench.data import get_dataset
from avggt_bench.data.cameras import project, unproject
from avggt_bench.data.dtu import erode, read_mvsnet_cam
from avggt_bench.errors import DataError

K = np.array([[361.5, 0.0, 82.3], [0.0, 362.1, 61.7], [0.0, 0.0, 1.0]])
HW = (120, 160)


def w2c_mm(i: int) -> np.ndarray:
    e = np.eye(4)
    e[:3, :3] = Rotation.from_euler("xyz", [0.05 * i, 0.3, -0.1]).as_matrix()
    e[:3, 3] = [-120.5, 35.25, 640.0 + 10 * i]
    return e


def cam_text(ext: np.ndarray, k: np.ndarray, tail: str = "425.0 2.5") -> str:
    rows = "\n".join(" ".join(f"{v:.15g}" for v in r) for r in ext)
    krows = "\n".join(" ".join(f"{v:.15g}" for v in r) for r in k)
    return f"extrinsic\n{rows}\n\nintrinsic\n{krows}\n\n{tail}\n"


def write_scan(root, scan="scan4", n=6, image_hw=HW, depth_mm=None, mask=None):
    folder = root / scan
    for sub in ("images", "depths", "binary_masks", "cams"):
        (folder / sub).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((*image_hw, 3), 20 + i, np.uint8)).save(
            folder / "images" / f"{i:08d}.jpg", quality=100
        )
        d = np.full(HW, 700.0, np.float32) if depth_mm is None else depth_mm(i)
        np.save(folder / "depths" / f"{i:08d}.npy", d)
        m = np.full(HW, 255, np.uint8) if mask is None else mask(i)
        Image.fromarray(m).save(folder / "binary_masks" / f"{i:08d}.png")
        (folder / "cams" / f"{i:08d}_cam.txt").write_text(cam_text(w2c_mm(i), K))
    (folder / "pair.txt").write_text("unused\n")
    return folder


@pytest.mark.parametrize("tail", ["425.0 2.5", "425.0 2.5 192", "425.0 2.5 192 905.0"])
def test_cam_files_with_29_30_31_tokens_parse(tmp_path, tail):
    path = tmp_path / "cam.txt"
    path.write_text(cam_text(w2c_mm(1), K, tail))
    ext, k, rng = read_mvsnet_cam(path)
    np.testing.assert_allclose(ext, w2c_mm(1), atol=1e-12)
    np.testing.assert_array_equal(k, K)
    assert rng == [float(v) for v in tail.split()]
    path.write_text("intrinsic\n1 2 3\n")
    with pytest.raises(DataError, match="MVSNet"):
        read_mvsnet_cam(path)


def test_erosion_matches_opencv_semantics():
    """A one-pixel hole grows to rows y0-4..y0+5, cols x0-4..x0+5 (anchor (5, 5)); the
    image border never erodes."""
    mask = np.ones((40, 50), bool)
    mask[20, 30] = False
    out = erode(mask, 10)
    rows, cols = np.nonzero(~out)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (16, 25, 26, 35)
    assert (~out).sum() == 100
    assert erode(np.ones((5, 5), bool), 10).all()


def test_units_geometry_and_masks(tmp_path):
    u0, v0, z_mm = 100, 40, 654.0

    def depth(i):
        d = np.full(HW, 700.0, np.float32)
        d[v0, u0] = z_mm
        d[5, 5] = np.nan
        return d

    def mask(i):
        m = np.full(HW, 255, np.uint8)
        m[80, 20] = 0  # a one-pixel hole
        return m

    write_scan(tmp_path, depth_mm=depth, mask=mask, image_hw=(240, 320))
    loader = get_dataset("dtu", tmp_path, load_depth=True)
    assert loader.sequences() == ["scan4"]
    scene = loader.load("scan4", [0, 5])
    assert scene.image_hw == HW  # the image was resized to the depth size
    assert scene.metric and scene.native_unit == "m"
    ext = w2c_mm(5)
    # native: P = K [R | t] in millimetres
    x_cam_mm = np.array([(u0 - K[0, 2]) * z_mm / K[0, 0], (v0 - K[1, 2]) * z_mm / K[1, 1], z_mm])
    x_world_mm = ext[:3, :3].T @ (x_cam_mm - ext[:3, 3])
    native = K @ (ext[:3, :3] @ x_world_mm + ext[:3, 3])
    uv, z = project(scene.intrinsics[1].numpy(), scene.extrinsics[1].numpy(), x_world_mm / 1000)
    np.testing.assert_allclose(uv[0], native[:2] / native[2], atol=1e-9)
    assert z[0] == pytest.approx(z_mm / 1000, abs=1e-12)
    np.testing.assert_allclose(scene.extrinsics[1, :, 3].numpy(), ext[:3, 3] / 1000, atol=1e-15)
    pts = unproject(
        scene.intrinsics[1].numpy(), scene.extrinsics[1].numpy(), scene.depth[1].numpy()
    )
    np.testing.assert_allclose(pts[v0, u0], x_world_mm / 1000, atol=1e-7)
    valid = scene.valid[0].numpy()
    assert not valid[5, 5] and scene.depth[0, 5, 5] == 0  # NaN → 0
    assert not valid[76:86, 16:26].any() and valid[75, 16] and valid[86, 20]
    assert valid.sum() == HW[0] * HW[1] - 100 - 1
