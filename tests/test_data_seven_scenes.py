"""7-Scenes: registered depth, conventions, protocol planning, bad input (datasets/README.md)."""

from __future__ import annotations

import subprocess
import sys
import threading

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
from avggt_bench.data.base import BaseLoader, FrameError
from avggt_bench.data.cameras import project, unproject
from avggt_bench.data.prepare import main as prepare_main
from avggt_bench.data.prepare.seven_scenes import register_7scenes_depth
from avggt_bench.data.presets import Preset
from avggt_bench.data.seven_scenes import SevenScenesLoader
from avggt_bench.errors import DataError

F, CX, CY = 525.0, 320.0, 240.0


def c2w_pose(i: int) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, :3] = Rotation.from_euler("xyz", [0.1 * i, -0.2, 0.05 * i]).as_matrix()
    c2w[:3, 3] = [0.3 * i, -0.1, 0.2]
    return c2w


def write_sequence(root, name="chess/seq-03", n=4, hw=(480, 640), depth_mm=None, poses=None):
    """Frames in the real layout: colour PNG, registered uint16-mm depth PNGs (the upstream and the
    clean registration, same content here), 4x4 c2w text."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    scene = name.split("/")[0]
    split = root / scene / "TestSplit.txt"
    seq = int(name.split("-")[1])
    lines = split.read_text().split() if split.exists() else []
    split.write_text("\n".join(sorted({*lines, f"sequence{seq}"})) + "\n")
    (root / scene / "TrainSplit.txt").touch()
    for i in range(n):
        stem = folder / f"frame-{i:06d}"
        img = np.zeros((*hw, 3), np.uint8)
        img[..., 0] = (i * 10) % 256
        Image.fromarray(img).save(f"{stem}.color.png")
        d = np.full(hw, 2000, np.uint16) if depth_mm is None else depth_mm(i)
        Image.fromarray(d).save(f"{stem}.depth.proj.png")
        Image.fromarray(d).save(f"{stem}.depth.proj.clean.png")
        pose = c2w_pose(i) if poses is None else poses(i)
        np.savetxt(f"{stem}.pose.txt", pose, fmt="%.9f")
    return folder


def test_registration_known_answers():
    """M = I: a plane z0 maps to z0 (1 mm), positions scale by 525/585, sentinel modes."""
    raw = np.full((480, 640), 2000, np.uint16)
    reg = register_7scenes_depth(raw, transform=np.eye(4))
    interior = reg[100:380, 100:540]
    assert np.all(np.abs(interior.astype(int) - 2000) <= 1)
    one = np.zeros((480, 640), np.uint16)
    one[50, 600] = 3000
    out = register_7scenes_depth(one, transform=np.eye(4))
    u = 525 * ((600 + 0.5 - 320) / 585) + 320
    v = 525 * ((50 + 0.5 - 240) / 585) + 240
    assert list(zip(*np.nonzero(out))) == [(round(v), round(u))]
    assert out[round(v), round(u)] == 3000
    # sentinels: excluded by default, kept (≈ 65.5 m) in the original script's mode
    sentinel = np.zeros((480, 640), np.uint16)
    sentinel[240, 320] = 65535
    assert not register_7scenes_depth(sentinel, transform=np.eye(4)).any()
    kept = register_7scenes_depth(sentinel, transform=np.eye(4), sentinel="keep")
    assert kept.max() >= 65000


def test_prepare_command_writes_registered_depth(tmp_path):
    folder = tmp_path / "chess" / "seq-01"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((480, 640), 1500, np.uint16)).save(folder / "frame-000000.depth.png")
    assert prepare_main(["7scenes", "--root", str(tmp_path)]) == 0
    for name in ("frame-000000.depth.proj.png", "frame-000000.depth.proj.clean.png"):
        reg = np.array(Image.open(folder / name))
        assert reg.dtype == np.uint16 and np.median(reg[reg > 0]) == pytest.approx(1500, abs=20)


def test_loader_geometry_matches_the_native_convention(tmp_path):
    """A world point projects to the same pixel through the native c2w and through ours, and the
    depth at that pixel unprojects back to it."""
    u0, v0, z0 = 400, 100, 2.345
    c2w = c2w_pose(2)
    x_cam = np.array([(u0 - CX) * z0 / F, (v0 - CY) * z0 / F, z0])
    x_world = c2w[:3, :3] @ x_cam + c2w[:3, 3]

    def depth(i):
        d = np.full((480, 640), 3000, np.uint16)
        d[v0, u0] = 2345
        d[0, 0], d[0, 1] = 65535, 12000  # sentinel and beyond the 10 m cut
        return d

    write_sequence(tmp_path, n=3, depth_mm=depth)
    loader = get_dataset("7scenes", tmp_path, load_depth=True)
    assert loader.sequences() == ["chess/seq-03"]
    scene = loader.load("chess/seq-03", [2, 0])
    assert scene.frame_ids == [2, 0] and scene.frame_indices == [2, 0]
    native = np.linalg.inv(c2w) @ np.append(x_world, 1.0)  # generic inverse: independent path
    native_uv = [F * native[0] / native[2] + CX, F * native[1] / native[2] + CY]
    ours, _ = project(scene.intrinsics[0].numpy(), scene.extrinsics[0].numpy(), x_world)
    np.testing.assert_allclose(ours[0], native_uv, atol=1e-9)
    np.testing.assert_allclose(ours[0], [u0, v0], atol=1e-9)
    pts = unproject(
        scene.intrinsics[0].numpy(), scene.extrinsics[0].numpy(), scene.depth[0].numpy()
    )
    np.testing.assert_allclose(pts[v0, u0], x_world, atol=1e-6)
    assert scene.depth[0, 0, 0] == 0 and not scene.valid[0, 0, 0] and not scene.valid[0, 0, 1]
    assert scene.valid[0, v0, u0] and scene.metric and scene.native_unit == "m"


def test_bad_frames_are_dropped_with_reasons_or_fail_the_scene(tmp_path):
    def pose(i):
        p = c2w_pose(i)
        if i == 1:
            p[0, 3] = np.nan
        return p

    folder = write_sequence(tmp_path, n=5, poses=pose)
    (folder / "frame-000002.color.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (folder / "frame-000003.depth.proj.clean.png").write_bytes(b"not a png")
    loader = get_dataset("7scenes", tmp_path, load_depth=True)
    scene = loader.load("chess/seq-03")
    assert scene.frame_ids == [0, 4]
    assert dict(scene.dropped) == {1: "nan_pose", 2: "corrupt_image", 3: "corrupt_depth"}
    with pytest.raises(FrameError, match="fail_scene") as info:
        loader.load("chess/seq-03", invalid_frames="fail_scene")
    assert info.value.reason == "nan_pose"


def test_protocol_counts_skips_and_never_crashes(tmp_path):
    write_sequence(tmp_path, "chess/seq-03", n=6)
    write_sequence(tmp_path, "fire/seq-03", n=6, poses=lambda i: np.full((4, 4), np.inf))
    preset = Preset.from_mapping(
        {
            "name": "t",
            "task": "mv_recon",
            "dataset": "7scenes",
            "root": str(tmp_path),
            "scenes": ["chess/seq-03", "fire/seq-03", "heads/seq-01"],
            "sampling": {"strategy": "stride", "kf_every": 2},
            "min_frames": 2,
            "metrics": ["acc"],
            "alignment": {"type": "umeyama_icp"},
        }
    )
    items = list(protocol_scenes(preset))
    assert [type(i).__name__ for i in items] == ["Scene", "SkippedScene", "SkippedScene"]
    scene, bad, missing = items
    assert scene.frame_ids == [0, 2, 4] and scene.meta["protocol"]["selected_indices"] == [0, 2, 4]
    assert scene.depth is not None  # mv_recon loads depth
    assert bad.reason == "no_valid_frames" and missing.reason == "missing_sequence"


def test_pi3_dense_plan_uses_the_shipped_check_list(tmp_path):
    """Planning reads no image: 1000 empty frames give 25 views; a short download is flagged."""
    for name, n in (("chess/seq-03", 1000), ("stairs/seq-01", 500), ("fire/seq-03", 950)):
        folder = tmp_path / "7scenes" / name
        folder.mkdir(parents=True)
        for i in range(n):
            (folder / f"frame-{i:06d}.color.png").touch()
            (folder / f"frame-{i:06d}.pose.txt").touch()
            (folder / f"frame-{i:06d}.depth.proj.png").touch()
    preset = load_protocol_preset("seven_scenes_pi3_dense", [f"paths.data={tmp_path}"])
    plan, _, _ = plan_protocol(preset)
    by_id = {p.scene_id: p for p in plan}
    assert len(plan) == 18
    assert by_id["chess/seq-03"].indices == list(range(0, 1000, 40))
    assert len(by_id["stairs/seq-01"].indices) == 13
    assert by_id["fire/seq-03"].reason == "frame_count_mismatch"
    assert sum(isinstance(p, SkippedScene) for p in plan) == 16


def test_missing_root_names_folder_layout_and_readme(tmp_path):
    with pytest.raises(DataError) as info:
        get_dataset("7scenes", tmp_path / "nowhere")
    msg = str(info.value)
    assert str(tmp_path / "nowhere") in msg and "TestSplit.txt" in msg
    assert "datasets/README.md" in msg and "'7-Scenes'" in msg


def test_many_frames_decode_once_in_parallel(tmp_path, monkeypatch, capsys):
    """800 frames: every image and depth map decoded exactly once, on several threads, straight
    into the scene's tensors, with a progress bar."""
    monkeypatch.setenv("AVGGT_PROGRESS", "1")
    hw = (48, 64)
    write_sequence(tmp_path, n=800, hw=hw)
    calls: list[str] = []
    depth_calls: list[str] = []
    threads: set[int] = set()
    original, original_depth = BaseLoader.read_image, SevenScenesLoader.read_depth

    def counting(self, info):
        calls.append(info.image_path.name)
        threads.add(threading.get_ident())
        return original(self, info)

    def counting_depth(self, info, size):
        depth_calls.append(info.depth_path.name)
        return original_depth(self, info, size)

    monkeypatch.setattr(BaseLoader, "read_image", counting)
    monkeypatch.setattr(SevenScenesLoader, "read_depth", counting_depth)
    loader = get_dataset("7scenes", tmp_path, load_depth=True, workers=4)
    scene = loader.load("chess/seq-03")
    assert scene.num_views == 800 and len(calls) == 800 and len(set(calls)) == 800
    assert len(depth_calls) == 800 and len(set(depth_calls)) == 800
    assert len(threads) > 1
    assert scene.images.is_contiguous() and scene.images[7, 0, 0, 0] == 70
    assert scene.depth.shape == (800, *hw) and scene.depth[799, 1, 1] == 2.0
    err = capsys.readouterr().err
    assert "loading 7scenes/chess/seq-03" in err and "/800 [" in err


# Measured in a process of its own: tracemalloc counts every thread's allocations, and a pytest
# worker's own threads (pytest-xdist's messaging) allocated megabytes during the measurement.
PEAK_SCRIPT = """
import sys, tracemalloc
from avggt_bench.data import get_dataset
loader = get_dataset("7scenes", sys.argv[1], load_depth=True, workers=4)
loader.native_frame_ids("chess/seq-03")  # list the folder before measuring
tracemalloc.start()
scene = loader.load("chess/seq-03")
_, peak = tracemalloc.get_traced_memory()
assert scene.num_views == 800
print(peak)
"""


def test_many_frames_keep_no_per_frame_arrays(tmp_path):
    """Python-side peak memory while loading 800 frames stays far below the decoded data: the
    decoders' per-frame arrays are written into the scene's tensors and dropped."""
    hw = (48, 64)
    write_sequence(tmp_path, n=800, hw=hw)
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = int(proc.stdout.split()[-1])
    # per frame the decoders allocate ~40 kB (RGB, uint16 PNG, float depth, mask); keeping them
    # all would peak above 30 MB. The loader's own metadata (paths, poses) is ~2 kB per frame.
    per_frame = hw[0] * hw[1] * (3 + 2 + 4 + 1 + 4)
    assert peak < 0.25 * 800 * per_frame, f"peak {peak / 1e6:.1f} MB: frames are retained"


def _seven_scenes_text(matrix: np.ndarray) -> str:
    """A 4x4 block as the released `frame-XXXXXX.pose.txt` files store it: tab-separated
    `%.7e` values with three-digit exponents (`9.9935108e-001`), a trailing tab, CRLF endings."""

    def num(x: float) -> str:
        mant, exp = f"{x:.7e}".split("e")
        return f"{mant}e{int(exp):+04d}".rjust(15)

    return "".join("\t".join(num(v) for v in row) + "\t\r\n" for row in matrix)


def test_real_pose_format_slightly_off_rotation_is_accepted_and_recorded(tmp_path):
    """A c2w whose rotation is 1.5e-4 away from orthonormal (as `stairs/seq-01`'s are, ≈1.46e-4)
    is used as stored, and the scene reports the worst deviation; a 2 % scale is still rejected.
    The split file uses CRLF line endings, as the released `TestSplit.txt` does."""
    rot = Rotation.from_euler("xyz", [0.3, -0.2, 0.9]).as_matrix()
    s = np.sqrt(1.0 + 1.5e-4)  # column 0 of length s: (RᵀR − I)[0, 0] = s² − 1 = 1.5e-4
    good = np.eye(4)
    good[:3, :3] = rot @ np.diag([s, 1.0, 1.0])
    good[:3, 3] = [0.25, -1.5, 0.75]
    scaled = good.copy()
    scaled[:3, :3] = rot * 1.01
    write_sequence(tmp_path, "stairs/seq-01", n=3)
    folder = tmp_path / "stairs" / "seq-01"
    for i, pose in enumerate((good, good, scaled)):
        (folder / f"frame-{i:06d}.pose.txt").write_bytes(_seven_scenes_text(pose).encode())
    (tmp_path / "stairs" / "TestSplit.txt").write_bytes(b"sequence1\r\nsequence4\r\n")
    (tmp_path / "stairs" / "seq-04").mkdir()
    text = (folder / "frame-000000.pose.txt").read_text()
    assert "e-001\t" in text or "e+000\t" in text
    loader = get_dataset("7scenes", tmp_path)
    assert loader.sequences() == ["stairs/seq-01", "stairs/seq-04"]
    scene = loader.load("stairs/seq-01")
    assert scene.frame_ids == [0, 1] and dict(scene.dropped) == {2: "bad_rotation"}
    # the stored c2w is used as it is: the w2c is its closed-form rigid inverse [Rᵀ | −Rᵀt]
    parsed = np.array([[float(v) for v in line.split()] for line in text.splitlines()])
    np.testing.assert_array_equal(scene.extrinsics[0, :, :3].numpy(), parsed[:3, :3].T)
    dev = scene.max_rotation_deviation
    assert dev == pytest.approx(1.5e-4, abs=2e-6)  # 7-digit text rounds the entries
    assert scene.record_fields()["max_rotation_deviation"] == dev
    np.testing.assert_allclose(scene.intrinsics[0].numpy(), [[F, 0, CX], [0, F, CY], [0, 0, 1]])


def simplerecon_register_one(v: int, u: int, raw_mm: int) -> tuple[int, int, int]:
    """One raw depth pixel through SimpleRecon's `data_scripts/7scenes_preprocessing.py`
    `process_frames`, step by step: float32 mm → m, eye coordinates at the pixel centre minus the
    image centre over f_d = 585, the fixed `d_to_rgb` transform, projection with f = 525 about the
    image centre, `round`, then `(1000 * registered_depth).astype(np.uint16)` on the float32
    registered depth (values ≥ 65.536 m wrap modulo 2¹⁶). Returns (row, col, stored value)."""
    from avggt_bench.data.prepare.seven_scenes import SEVEN_SCENES_M

    z = np.float32(raw_mm) / np.float32(1000)
    eye = np.array([(u + 0.5 - 320) / 585 * z, (v + 0.5 - 240) / 585 * z, z, 1.0])
    cam = SEVEN_SCENES_M @ eye
    col = round(cam[0] / cam[2] * 525 + 320)
    row = round(cam[1] / cam[2] * 525 + 240)
    stored = int(np.int64(np.float32(1000) * np.float32(cam[2])) % 65536)
    return row, col, stored


def test_raw_65535_pixel_through_the_upstream_and_the_clean_registration(tmp_path):
    """A raw 65535 ("no reading") pixel: SimpleRecon's registration stores it as 65.5+ m wrapped
    by the uint16 cast to a few centimetres, which the evaluation loaders' filter (65535, > 10 m,
    < 1 mm) keeps as valid depth; the clean registration drops it. The π³ presets read the
    upstream file (`depth_sentinel: keep`), the default loader the clean one."""
    v, u = 400, 600
    row, col, stored = simplerecon_register_one(v, u, 65535)
    assert 0 < stored < 1000  # wrapped: a bogus depth of under a metre
    raw = np.zeros((480, 640), np.uint16)
    raw[v, u] = 65535
    upstream = register_7scenes_depth(raw, sentinel="keep")
    clean = register_7scenes_depth(raw, sentinel="exclude")
    assert list(zip(*np.nonzero(upstream))) == [(row, col)]
    assert abs(int(upstream[row, col]) - stored) <= 1  # float64 here, float32 upstream: ≤ 1 mm
    assert not clean.any()

    root = tmp_path / "7scenes"  # the presets' ${paths.data}/7scenes
    folder = root / "chess" / "seq-03"
    write_sequence(root, n=1)
    Image.fromarray(raw).save(folder / "frame-000000.depth.png")
    (folder / "frame-000000.depth.proj.png").unlink()
    (folder / "frame-000000.depth.proj.clean.png").unlink()
    assert prepare_main(["7scenes", "--root", str(root)]) == 0
    keep = get_dataset("7scenes", root, load_depth=True, compat={"depth_sentinel": "keep"})
    scene = keep.load("chess/seq-03")
    assert scene.valid[0].sum() == 1 and scene.valid[0, row, col]
    assert scene.depth[0, row, col].item() == pytest.approx(upstream[row, col] / 1000, abs=1e-6)
    default = get_dataset("7scenes", root, load_depth=True).load("chess/seq-03")
    assert not default.valid.any()
    for name in ("seven_scenes_pi3_dense", "seven_scenes_pi3_sparse"):
        preset = load_protocol_preset(name, [f"paths.data={tmp_path}"])
        assert preset.compat["depth_sentinel"] == "keep"
        assert preset.build_loader().depth_suffix == "depth.proj.png"
    clean_preset = load_protocol_preset(
        "seven_scenes_pi3_dense",
        [f"paths.data={tmp_path}", "dataset.compat.depth_sentinel=exclude"],
    )
    assert clean_preset.build_loader().depth_suffix == "depth.proj.clean.png"
