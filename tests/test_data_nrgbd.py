"""Neural RGB-D: OpenGL poses, principal point switch, NaN blocks, numeric file order."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from avggt_bench.data import get_dataset
from avggt_bench.data.cameras import project, unproject
from avggt_bench.data.nrgbd import FOCAL
from avggt_bench.errors import DataError


def gl_pose(i: int) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.from_euler("yxz", [0.2 * i, 0.1, -0.05 * i]).as_matrix()
    c2w[:3, 3] = [0.5 * i, 1.0, -0.3]
    return np.round(c2w, 12)  # exactly what poses.txt stores


def write_scene(root, name="kitchen", n=12, nan_frames=(), depth_mm=None, size=(480, 640)):
    folder = root / name
    (folder / "images").mkdir(parents=True)
    (folder / "depth").mkdir()
    blocks = []
    for i in range(n):
        Image.fromarray(np.full((*size, 3), i, np.uint8)).save(folder / "images" / f"img{i}.png")
        d = np.full(size, 1500, np.uint16) if depth_mm is None else depth_mm(i)
        Image.fromarray(d).save(folder / "depth" / f"depth{i}.png")
        pose = gl_pose(i)
        rows = [" ".join("nan" if i in nan_frames else f"{v:.12f}" for v in r) for r in pose]
        blocks.append("\n".join(rows))
    (folder / "poses.txt").write_text("\n".join(blocks) + "\n")
    return folder


def test_opengl_pose_projects_like_the_native_convention(tmp_path):
    """A point in front of the GL camera (negative z) gets positive z and projects to the
    analytic pixel with f = 554.2562584220408 and the evaluation loaders' principal point
    (320, 240); files img2 and img10 sort numerically."""
    u0, v0, z0 = 150, 300, 1.234
    x_gl = np.array([(u0 - 320) * z0 / FOCAL, -(v0 - 240) * z0 / FOCAL, -z0, 1.0])

    def depth(i):
        d = np.full((480, 640), 1500, np.uint16)
        d[v0, u0] = 1234
        return d

    write_scene(tmp_path, depth_mm=depth)
    loader = get_dataset(
        "nrgbd", tmp_path, load_depth=True, compat={"nrgbd_principal_point": "eval_loaders"}
    )
    assert loader.native_frame_ids("kitchen")[:4] == [0, 1, 2, 3]
    scene = loader.load("kitchen", [10, 2])
    assert scene.frame_ids == [10, 2] and scene.images[0, 0, 0, 0] == 10
    c2w_gl = gl_pose(10)
    x_world = (c2w_gl @ x_gl)[:3]
    # native: OpenGL camera looks down -z with y up
    cam = np.linalg.inv(c2w_gl) @ np.append(x_world, 1.0)
    native = [FOCAL * cam[0] / -cam[2] + 320, -FOCAL * cam[1] / -cam[2] + 240]
    uv, z = project(scene.intrinsics[0].numpy(), scene.extrinsics[0].numpy(), x_world)
    assert z[0] == pytest.approx(z0, abs=1e-9)
    np.testing.assert_allclose(uv[0], native, atol=1e-9)
    np.testing.assert_allclose(uv[0], [u0, v0], atol=1e-9)
    pts = unproject(
        scene.intrinsics[0].numpy(), scene.extrinsics[0].numpy(), scene.depth[0].numpy()
    )
    np.testing.assert_allclose(pts[v0, u0], x_world, atol=1e-6)
    assert pytest.approx(320 / np.tan(np.radians(30)), abs=1e-12) == FOCAL


def test_nan_pose_block_is_dropped_never_identity(tmp_path):
    write_scene(tmp_path, n=5, nan_frames=(3,))
    loader = get_dataset("nrgbd", tmp_path)
    assert loader.frame_validity("kitchen") == [True, True, True, False, True]
    scene = loader.load("kitchen")
    assert scene.frame_ids == [0, 1, 2, 4] and scene.dropped == [(3, "nan_pose")]
    assert np.isfinite(scene.extrinsics.numpy()).all()


def test_incomplete_scene_and_missing_root(tmp_path):
    folder = write_scene(tmp_path, n=4)
    (folder / "images" / "img3.png").unlink()
    with pytest.raises(DataError, match="3 images"):
        get_dataset("nrgbd", tmp_path).load("kitchen")
    with pytest.raises(DataError, match="Neural RGB-D"):
        get_dataset("nrgbd", tmp_path / "missing")


def authors_ray(i: float, j: float, w: int = 640, h: int = 480) -> np.ndarray:
    """The camera-space ray direction of pixel (i, j) as the dataset authors build it
    (neural-rgbd-surface-reconstruction `nerf_helpers.py` `get_rays`): OpenGL axes,
    ((i + 0.5 − W/2)/f, −(j + 0.5 − H/2)/f, −1)."""
    return np.array([(i + 0.5 - w / 2) / FOCAL, -(j + 0.5 - h / 2) / FOCAL, -1.0])


@pytest.mark.parametrize("switch, shift", [(None, 0.0), ("authors", 0.0), ("eval_loaders", 0.5)])
def test_principal_point_under_both_switches(tmp_path, switch, shift):
    """A point on the authors' ray of pixel (i, j) projects to (i, j) with the authors' principal
    point ((W−1)/2, (H−1)/2) = (319.5, 239.5), the default; the Spann3R/π³ evaluation loaders'
    (W/2, H/2) = (320, 240) puts it half a pixel right and down."""
    write_scene(tmp_path, n=3)
    compat = {} if switch is None else {"nrgbd_principal_point": switch}
    scene = get_dataset("nrgbd", tmp_path, compat=compat).load("kitchen", [2])
    cx, cy = (320.0, 240.0) if switch == "eval_loaders" else (319.5, 239.5)
    np.testing.assert_array_equal(scene.intrinsics[0].numpy()[:2, 2], [cx, cy])
    i, j, z = 100, 400, 2.5
    c2w_gl = gl_pose(2)
    x_world = (c2w_gl @ np.append(z * authors_ray(i, j), 1.0))[:3]
    uv, depth = project(scene.intrinsics[0].numpy(), scene.extrinsics[0].numpy(), x_world)
    assert depth[0] == pytest.approx(z, abs=1e-9)
    np.testing.assert_allclose(uv[0], [i + shift, j + shift], atol=1e-9)


def test_protocol_presets_keep_the_evaluation_loaders_principal_point():
    from avggt_bench.data.presets import load_protocol_preset, preset_names

    names = [n for n in preset_names() if n.startswith("nrgbd_")]
    assert len(names) >= 6
    for name in names:
        assert load_protocol_preset(name).compat.get("nrgbd_principal_point") == "eval_loaders", (
            name
        )
