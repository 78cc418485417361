"""ETH3D: COLMAP text calibration, half-pixel rule, raw float32 depth, prepared variant.

Fixtures are written in the dataset's own format: cameras.txt / images.txt with comment
headers and empty POINTS2D lines, depth as raw little-endian float32 behind a `.JPG` name."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.optimize import brentq
from scipy.spatial.transform import Rotation

from avggt_bench.data import get_dataset
from avggt_bench.data.cameras import project
from avggt_bench.data.colmap import read_cameras, read_images
from avggt_bench.data.prepare import main as prepare_main
from avggt_bench.errors import DataError

W, H = 64, 48
SCENE = "courtyard"
# THIN_PRISM_FISHEYE: fx fy cx cy k1 k2 p1 p2 k3 k4 sx1 sy1
FISHEYE = (40.0, 41.0, 31.75, 23.25, -0.05, 0.004, 0.0003, -0.0002, 0.001, -0.0005, 1e-4, 2e-4)
PINHOLE = (38.25, 38.75, 32.125, 24.375)
SIMPLE = (37.5, 31.5, 23.5)
CAMERAS_TXT = f"""# Camera list with one line of data per camera:
#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]
# Number of cameras: 3
0 THIN_PRISM_FISHEYE {W} {H} {" ".join(map(repr, FISHEYE))}
1 PINHOLE {W} {H} {" ".join(map(repr, PINHOLE))}
2 SIMPLE_PINHOLE {W} {H} {" ".join(map(repr, SIMPLE))}
"""
# (image id, qw qx qy qz, t, camera id, name); the quaternions are unit, one with qw < 0
IMAGES = [
    (7, (0.9238795325112867, 0.0, 0.3826834323650898, 0.0), (0.1, -0.2, 1.5), 1, "DSC_0003.JPG"),
    (8, (0.5, 0.5, -0.5, 0.5), (-0.4, 0.25, 2.0), 0, "DSC_0001.JPG"),
    (9, (-0.8, 0.36, 0.48, 0.0), (0.0, 0.3, 0.75), 2, "DSC_0002.JPG"),
]


def images_txt() -> str:
    lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
        "# Number of images: 3, mean observations per image: 0.67",
    ]
    points2d = ["", "3.5 4.5 12 10.25 20.0 -1", ""]  # empty POINTS2D lines are part of the format
    for (iid, q, t, cam, name), pts in zip(IMAGES, points2d):
        lines.append(f"{iid} {' '.join(map(repr, q))} {' '.join(map(repr, t))} {cam} "
                     f"dslr_images/{name}")  # fmt: skip
        lines.append(pts)
    return "\n".join(lines) + "\n"


def native_w2c(q_wxyz, t) -> np.ndarray:
    """COLMAP: the scalar-first quaternion and t are the world-to-camera pose (SciPy: xyzw)."""
    qw, qx, qy, qz = q_wxyz
    rot = Rotation.from_quat([qx, qy, qz, qw]).as_matrix()
    return np.concatenate((rot, np.array(t)[:, None]), 1)


def depth_map(name: str) -> np.ndarray:
    d = np.full((H, W), 3.25, np.float32)
    d[2, 3] = np.inf
    d[4, 5] = -1.0
    d[0, 0] = np.nan
    if (
        name == "DSC_0001.JPG"
    ):  # the fisheye frame: one depth sample, to follow it through the splat
        d[:] = 0.0
        d[35, 50] = 4.0
    return d


def write_scene(root):
    base = root / SCENE
    calib = base / "dslr_calibration_jpg"
    calib.mkdir(parents=True)
    (calib / "cameras.txt").write_text(CAMERAS_TXT)
    (calib / "images.txt").write_text(images_txt())
    (calib / "points3D.txt").write_text("# 3D point list\n")
    (base / "images" / "dslr_images").mkdir(parents=True)
    (base / "ground_truth_depth" / "dslr_images").mkdir(parents=True)
    for k, (*_, name) in enumerate(IMAGES):
        Image.fromarray(np.full((H, W, 3), 40 * k, np.uint8)).save(
            base / "images" / "dslr_images" / name, format="JPEG"
        )
        # raw little-endian float32, row-major, despite the .JPG name
        data = depth_map(name).astype("<f4").tobytes()
        (base / "ground_truth_depth" / "dslr_images" / name).write_bytes(data)
    return base


def test_colmap_text_files_parse(tmp_path):
    """All three models; two lines per image with empty POINTS2D lines kept in pairing."""
    base = write_scene(tmp_path)
    cams = read_cameras(base / "dslr_calibration_jpg" / "cameras.txt")
    assert [cams[i].model for i in (0, 1, 2)] == ["THIN_PRISM_FISHEYE", "PINHOLE", "SIMPLE_PINHOLE"]
    assert cams[0].params == FISHEYE and (cams[0].width, cams[0].height) == (W, H)
    assert cams[2].focal_principal == (37.5, 37.5, 31.5, 23.5)
    assert cams[0].fisheye == (-0.05, 0.004, 0.001, -0.0005)  # parameters 5, 6, 9, 10
    images = read_images(base / "dslr_calibration_jpg" / "images.txt")
    assert [(im.image_id, im.camera_id, im.name) for im in images] == [
        (7, 1, "dslr_images/DSC_0003.JPG"),
        (8, 0, "dslr_images/DSC_0001.JPG"),
        (9, 2, "dslr_images/DSC_0002.JPG"),
    ]
    assert images[2].qvec_wxyz == IMAGES[2][1] and images[1].tvec == IMAGES[1][2]
    bad = tmp_path / "cams_bad.txt"
    bad.write_text("0 PINHOLE 64 48 1 2 3\n")
    with pytest.raises(DataError, match="PINHOLE takes 4 parameters"):
        read_cameras(bad)


@pytest.mark.parametrize("half_pixel", ["shift", "ignore"])
def test_distorted_geometry_projects_like_colmap(tmp_path, half_pixel):
    """A world point projects to COLMAP's pixel minus 0.5 (the canonical pixel-centre rule), or to
    exactly COLMAP's pixel with compat colmap_half_pixel=ignore; C = −Rᵀt; depth cleaned."""
    write_scene(tmp_path)
    compat = {"colmap_half_pixel": half_pixel}
    loader = get_dataset("eth3d", tmp_path, variant="distorted", load_depth=True, compat=compat)
    assert loader.sequences() == [SCENE]
    assert loader.native_frame_ids(SCENE) == ["DSC_0001.JPG", "DSC_0002.JPG", "DSC_0003.JPG"]
    scene = loader.load(SCENE, [2, 1])
    assert scene.frame_ids == ["DSC_0003.JPG", "DSC_0002.JPG"]
    shift = 0.5 if half_pixel == "shift" else 0.0
    x_world = np.array([[0.3, -0.2, 4.0], [-0.5, 0.4, 3.0]])
    for view, (_, q, t, _, _), (fx, fy, cx, cy) in (
        (0, IMAGES[0], PINHOLE),
        (1, IMAGES[2], (SIMPLE[0], SIMPLE[0], SIMPLE[1], SIMPLE[2])),
    ):
        e = native_w2c(q, t)
        cam = x_world @ e[:, :3].T + e[:, 3]
        colmap_uv = np.stack((fx * cam[:, 0] / cam[:, 2] + cx, fy * cam[:, 1] / cam[:, 2] + cy), 1)
        uv, z = project(scene.intrinsics[view].numpy(), scene.extrinsics[view].numpy(), x_world)
        np.testing.assert_allclose(uv, colmap_uv - shift, atol=1e-9)
        np.testing.assert_allclose(z, cam[:, 2], atol=1e-12)
        centre = -e[:, :3].T @ e[:, 3]
        np.testing.assert_allclose(scene.camera_to_world()[view, :, 3].numpy(), centre, atol=1e-12)
    valid = scene.valid[0].numpy()
    assert scene.depth[0, 10, 10] == pytest.approx(3.25)
    assert not valid[2, 3] and not valid[4, 5] and not valid[0, 0]  # inf, negative, NaN
    assert scene.depth[0, 2, 3] == 0 and valid.sum() == H * W - 3
    assert scene.metric and scene.native_unit == "m"


def test_depth_of_the_wrong_size_and_missing_root(tmp_path):
    base = write_scene(tmp_path)
    (base / "ground_truth_depth" / "dslr_images" / "DSC_0002.JPG").write_bytes(b"\0" * 100)
    loader = get_dataset("eth3d", tmp_path, variant="distorted", load_depth=True)
    scene = loader.load(SCENE)
    assert scene.frame_ids == ["DSC_0001.JPG", "DSC_0003.JPG"]
    assert scene.dropped == [("DSC_0002.JPG", "size_mismatch")]
    with pytest.raises(DataError) as info:
        get_dataset("eth3d", tmp_path / "absent")
    assert "'ETH3D'" in str(info.value) and "custom_undistorted_cam" in str(info.value)
    with pytest.raises(DataError, match="prepare eth3d"):
        get_dataset("eth3d", tmp_path).load(SCENE)  # variant pi3 not prepared yet


def test_pi3_preparation_and_prepared_variant(tmp_path):
    """`prepare eth3d --mode pi3`: .npz with the COLMAP K and the 4×4 w2c; depth splatted through
    the equidistant fisheye (k1, k2, k3, k4 only) to the rounded undistorted pixel."""
    base = write_scene(tmp_path)
    assert prepare_main(["eth3d", "--root", str(tmp_path), "--mode", "pi3"]) == 0
    npz = np.load(base / "custom_undistorted_cam" / "DSC_0003.npz")
    fx, fy, cx, cy = PINHOLE
    np.testing.assert_array_equal(npz["intrinsics"], [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    ext = npz["extrinsics"]
    np.testing.assert_allclose(ext[:3], native_w2c(IMAGES[0][1], IMAGES[0][2]), atol=1e-12)
    np.testing.assert_array_equal(ext[3], [0, 0, 0, 1])

    # the fisheye frame's single depth sample, undistorted by hand: θ_d = r_d, solve θ, r = tan θ
    f_x, f_y, c_x, c_y, k1, k2, _, _, k3, k4 = FISHEYE[:10]
    xd, yd = (50 - c_x) / f_x, (35 - c_y) / f_y
    theta_d = np.hypot(xd, yd)
    theta = brentq(
        lambda th: th * (1 + k1 * th**2 + k2 * th**4 + k3 * th**6 + k4 * th**8) - theta_d,
        0.0,
        1.5,
        xtol=1e-15,
    )
    scale = np.tan(theta) / theta_d
    target = (round(f_y * yd * scale + c_y), round(f_x * xd * scale + c_x))
    assert target != (35, 50)  # the distortion moves it
    loader = get_dataset("eth3d", tmp_path, load_depth=True)  # variant pi3
    assert loader.native_frame_ids(SCENE) == ["DSC_0001.JPG", "DSC_0002.JPG", "DSC_0003.JPG"]
    scene = loader.load(SCENE)
    assert np.argwhere(scene.valid[0].numpy()).tolist() == [list(target)]
    assert scene.depth[0][target].item() == 4.0
    # pinhole frames are copied unchanged (invalid values become 0); K shifted by half a pixel
    np.testing.assert_array_equal(scene.depth[2].numpy()[5:, 5:], 3.25)
    np.testing.assert_allclose(
        scene.intrinsics[2].numpy(), [[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]]
    )
    x_world = np.array([0.2, 0.1, 5.0])
    e = native_w2c(IMAGES[0][1], IMAGES[0][2])
    cam = e[:, :3] @ x_world + e[:, 3]
    uv, _ = project(scene.intrinsics[2].numpy(), scene.extrinsics[2].numpy(), x_world)
    np.testing.assert_allclose(
        uv[0], [fx * cam[0] / cam[2] + cx - 0.5, fy * cam[1] / cam[2] + cy - 0.5], atol=1e-9
    )
