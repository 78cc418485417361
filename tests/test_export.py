"""Export of saved predictions: the `.ply` read back holds exactly the points the confidence rule
keeps, coloured by their pixels; the `.glb` holds that cloud and one frustum per view; records,
presets, switches and bad inputs."""

import json
import struct
import time

import numpy as np
import pytest
import torch
import trimesh
from test_job_protocol import compose_job

from avggt_bench.errors import DataError
from avggt_bench.export import (
    FRUSTUM_SCALE,
    GREY,
    OPENCV_TO_GLTF,
    export,
    frustum_segments,
    main,
    preset_choice,
)
from avggt_bench.models.predictions import Predictions
from avggt_bench.records.saved_predictions import save_scene, scene_file
from avggt_bench.run import run_job

S, H, W = 2, 4, 5
K = np.array([[4.0, 0, 2.0], [0, 4.0, 1.5], [0, 0, 1]])


def _prediction(conf: np.ndarray, kind: str = "exp_plus_one") -> Predictions:
    """Two views 4x5: camera 0 at the origin, camera 1 moved by x = 1; world points on a known
    grid that differs from the depth's unprojection (so the two sources can be told apart)."""
    w2c = np.zeros((S, 3, 4))
    w2c[:, :, :3] = np.eye(3)
    w2c[1, 0, 3] = -1.0  # camera 1's centre at x = +1
    depth = 2.0 + np.arange(S * H * W, dtype=np.float32).reshape(S, H, W) / 100
    points = np.arange(S * H * W * 3, dtype=np.float32).reshape(S, H, W, 3) / 10
    t = torch.from_numpy
    return Predictions(
        extrinsics=t(w2c)[None],
        intrinsics=t(np.stack([K, K]))[None],
        depth=t(depth)[None, ..., None],
        depth_conf=t(conf.astype(np.float32))[None],
        world_points=t(points)[None],
        world_points_conf=t(conf.astype(np.float32))[None],
        image_hw=(H, W),
        conf_kind=kind,
    )


def _exp_conf() -> np.ndarray:
    """1 + exp-style confidences from 1 to 5.75, some exactly at the cut of 3."""
    conf = 1.0 + np.arange(S * H * W, dtype=np.float64).reshape(S, H, W) * 0.125
    conf[0, 0, 0] = conf[1, 3, 4] = 3.0
    return conf


def _images() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (S, H, W, 3), dtype=np.uint8)


def _save(folder, pred, images=None, scene="scene-a", run="run1"):
    path = scene_file(folder / f"{run}.json", scene)
    meta = {"scene_id": scene, "run_id": run, "frame_ids": list(range(S))}
    save_scene(path, pred, meta, images, dtype="float32")
    return path


def _record(folder, run="run1", dataset=None) -> str:
    path = folder / f"{run}.json"
    record = {"run_id": run, "config": {"dataset": dataset or {"name": "x"}}}
    path.write_text(json.dumps(record))
    return str(path)


def _glb_meshes(path) -> list[dict]:
    data = path.read_bytes()
    (n,) = struct.unpack("<I", data[12:16])
    return json.loads(data[20 : 20 + n])["meshes"]


def test_ply_round_trip_keeps_the_confident_points_with_their_pixels_colours(tmp_path, capsys):
    conf, images = _exp_conf(), _images()
    pred = _prediction(conf)
    npz = _save(tmp_path, pred, images)
    assert main([str(npz)]) == 0
    keep = conf >= 3.0  # VGGT-style 1 + exp confidence: inclusive cut at 3
    ply = tmp_path / "run1.exports" / "scene-a.ply"
    cloud = trimesh.load(ply)
    assert isinstance(cloud, trimesh.PointCloud)
    assert len(cloud.vertices) == keep.sum() > (conf > 3.0).sum()  # those at exactly 3 kept
    np.testing.assert_array_equal(cloud.colors[:, :3], images[keep])
    points = pred.world_points[0].numpy()
    np.testing.assert_allclose(cloud.vertices, points[keep], rtol=1e-6)
    out = capsys.readouterr().out
    assert f"kept {keep.sum()} of {S * H * W} points" in out and "depth_conf >= 3" in out
    assert "scene-a.ply" in out and f"{keep.sum()} points" in out


def test_glb_holds_the_cloud_and_one_frustum_per_view(tmp_path):
    conf = _exp_conf()
    pred = _prediction(conf)
    export(_save(tmp_path, pred, _images()), out=tmp_path / "out")
    scene = trimesh.load(tmp_path / "out" / "scene-a.glb")
    assert isinstance(scene, trimesh.Scene)
    cloud = scene.geometry["points"]
    assert isinstance(cloud, trimesh.PointCloud) and len(cloud.vertices) == (conf >= 3).sum()
    frusta = {k: g for k, g in scene.geometry.items() if k.startswith("camera_")}
    assert sorted(frusta) == ["camera_000", "camera_001"]
    kept = pred.world_points[0].numpy()[conf >= 3].astype(np.float64)
    size = FRUSTUM_SCALE * np.median(np.linalg.norm(kept - kept.mean(0), axis=1))
    for i, name in enumerate(sorted(frusta)):
        path = frusta[name]
        assert isinstance(path, trimesh.path.Path3D) and len(path.vertices) == 16  # 8 lines
        centre = np.array([float(i), 0.0, 0.0])
        assert np.linalg.norm(path.vertices - centre, axis=1).min() < 1e-6  # the apex
        np.testing.assert_allclose(path.vertices[:, 2].max(), size, rtol=1e-5)  # looks along +z
        np.testing.assert_array_equal(scene.graph[name][0], OPENCV_TO_GLTF)
    colours = [m for m in _glb_meshes(tmp_path / "out" / "scene-a.glb") if m["name"] != "points"]
    assert all("COLOR_0" in m["primitives"][0]["attributes"] for m in colours)


def test_frustum_corners_project_onto_the_image_corners():
    c2w = np.hstack([np.eye(3), [[1.0], [2.0], [3.0]]])
    seg = frustum_segments(c2w, K, (H, W), size=0.5)
    assert seg.shape == (8, 2, 3)
    np.testing.assert_allclose(seg[:4, 0], np.tile([1.0, 2.0, 3.0], (4, 1)))
    cam = seg[:4, 1] - [1.0, 2.0, 3.0]
    np.testing.assert_allclose(cam[:, 2], 0.5)
    pix = (cam / cam[:, 2:]) @ K.T
    expected = [[-0.5, -0.5], [W - 0.5, -0.5], [W - 0.5, H - 0.5], [-0.5, H - 0.5]]
    np.testing.assert_allclose(pix[:, :2], expected, atol=1e-12)


def test_the_confidence_threshold_switch_changes_the_count(tmp_path):
    conf = _exp_conf()
    npz = _save(tmp_path, _prediction(conf), _images())
    (low,) = export(npz, out=tmp_path / "low", conf_threshold=1.5)
    (high,) = export(npz, out=tmp_path / "high", conf_threshold=5.0)
    assert len(trimesh.load(low.ply).vertices) == (conf >= 1.5).sum()
    assert len(trimesh.load(high.ply).vertices) == (conf >= 5.0).sum()
    assert len(low.cloud.points) > len(high.cloud.points)


def test_sigmoid_confidence_keeps_strictly_above_the_cut(tmp_path, capsys):
    conf = np.linspace(0.0, 0.4, S * H * W).reshape(S, H, W)
    conf[0, 1, 1] = conf[1, 2, 2] = 0.25  # exactly representable: on the cut of the switch
    npz = _save(tmp_path, _prediction(conf, "sigmoid"), _images())
    stored = conf.astype(np.float32).astype(np.float64)  # as saved (float32) and compared
    (default,) = export(npz, out=tmp_path / "default")
    assert len(trimesh.load(default.ply).vertices) == (stored > 0.1).sum()
    assert "depth_conf > 0.1, sigmoid default" in capsys.readouterr().out
    (cut,) = export(npz, out=tmp_path / "cut", conf_threshold=0.25)
    assert len(trimesh.load(cut.ply).vertices) == (stored > 0.25).sum()
    assert (stored > 0.25).sum() < (stored >= 0.25).sum()


def test_without_images_the_points_are_grey(tmp_path):
    (done,) = export(_save(tmp_path, _prediction(_exp_conf())), out=tmp_path / "o")
    colours = trimesh.load(done.ply).colors[:, :3]
    assert len(colours) == (_exp_conf() >= 3).sum() and (colours == GREY).all()


def test_depth_unproject_places_the_points_by_depth_and_camera(tmp_path):
    conf = np.full((S, H, W), 4.0)
    pred = _prediction(conf)
    npz = _save(tmp_path, pred, _images())
    (done,) = export(npz, out=tmp_path / "o", points_source="depth_unproject")
    pts = trimesh.load(done.ply).vertices.reshape(S, H, W, 3)
    d = pred.depth[0, ..., 0].numpy().astype(np.float64)
    v, u = np.mgrid[0:H, 0:W]
    for i, cx in enumerate((0.0, 1.0)):  # camera 1 sits at x = 1, unrotated
        x = (u - K[0, 2]) * d[i] / K[0, 0] + cx
        y = (v - K[1, 2]) * d[i] / K[1, 1]
        np.testing.assert_allclose(pts[i], np.stack([x, y, d[i]], -1), rtol=1e-6, atol=1e-6)


def test_more_points_than_max_points_are_subsampled_the_same_way_each_time(tmp_path, capsys):
    images = _images()
    npz = _save(tmp_path, _prediction(_exp_conf()), images)
    (a,) = export(npz, out=tmp_path / "a", max_points=7)
    (b,) = export(npz, out=tmp_path / "b", max_points=7)
    pa, pb = trimesh.load(a.ply), trimesh.load(b.ply)
    assert len(pa.vertices) == 7
    np.testing.assert_array_equal(pa.vertices, pb.vertices)
    (full,) = export(npz, out=tmp_path / "full")
    rows = {tuple(r) for r in np.hstack([trimesh.load(full.ply).vertices, full.cloud.colors])}
    assert {tuple(r) for r in np.hstack([pa.vertices, a.cloud.colors])} <= rows
    assert f"{len(full.cloud.points)} subsampled to 7" in capsys.readouterr().out


def test_a_record_exports_every_saved_scene(tmp_path, capsys):
    record = _record(tmp_path)
    for scene in ("scene-a", "scene/b"):
        _save(tmp_path, _prediction(_exp_conf()), _images(), scene=scene)
    assert main([record]) == 0
    out_dir = tmp_path / "run1.exports"
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "scene-a.glb",
        "scene-a.ply",
        "scene_b.glb",
        "scene_b.ply",
    ]
    out = capsys.readouterr().out
    assert f"scene/b: kept {(_exp_conf() >= 3).sum()} of 40" in out and "(default" in out


def test_the_record_preset_chooses_the_points_and_the_cut(tmp_path):
    mv = {"name": "mv", "task": "mv_recon", "outputs": {"points_source": "depth_unproject"}}
    chamfer = {"name": "sc", "task": "scannet_recon", "outputs": {"conf_threshold": 4.5}}
    assert preset_choice({"config": {"dataset": mv}}).points_source == "depth_unproject"
    choice = preset_choice({"config": {"dataset": chamfer}})
    assert (choice.points_source, choice.conf_threshold) == ("depth_unproject", 4.5)
    assert preset_choice({"config": {"dataset": {"name": "plain"}}}).points_source == "point_head"
    record = _record(tmp_path, dataset=chamfer)
    conf = _exp_conf()
    _save(tmp_path, _prediction(conf), _images())
    (done,) = export(record)
    assert len(done.cloud.points) == (conf >= 4.5).sum()
    assert "depth_unproject" in done.cloud.rule
    (chosen,) = export(record, points_source="point_head", out=tmp_path / "o")
    assert len(chosen.cloud.points) == (conf >= 3).sum()  # the Chamfer cut is not the point head's


def test_a_cut_that_keeps_nothing_writes_frusta_only_and_says_why(tmp_path, capsys):
    npz = _save(tmp_path, _prediction(_exp_conf()), _images())
    (done,) = export(npz, out=tmp_path / "o", conf_threshold=10.0)
    assert done.ply is None and not (tmp_path / "o" / "scene-a.ply").exists()
    assert len(trimesh.load(done.glb).geometry) == S
    out = capsys.readouterr().out
    assert "kept 0 of 40" in out and "confidences span 1.125..5.75" in out
    assert "lower --conf-threshold" in out


def test_bad_inputs_name_the_problem_and_the_fix(tmp_path, capsys):
    with pytest.raises(DataError, match="no such predictions file"):
        export(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable predictions file"):
        export(garbage)
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(DataError, match="not a job record"):
        export(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataError, match="not a readable record"):
        export(tmp_path / "broken.json")
    with pytest.raises(DataError, match=r"predictions\.save=true"):
        export(_record(tmp_path, run="nothing_saved"))
    with pytest.raises(DataError, match=r"expected a job record \(\.json\)"):
        export(tmp_path / "cloud.ply")
    assert main([str(garbage)]) == 2
    assert "error:" in capsys.readouterr().err


def test_a_real_job_exports_its_saved_scenes(tmp_path, capsys):
    tiny = ["model=vggt_small", "model.preprocess.size=42", "dataset.width=56"]
    tiny += ["dataset.height=42", "timing.warmup=0", "timing.repeats=1"]
    overrides = [*tiny, "dataset=synthetic_sparse", "dataset.frames=4", "predictions.save=true"]
    assert run_job(compose_job(tmp_path, *overrides)).status == "ok"
    [record] = (tmp_path / "records").glob("*.json")
    start = time.perf_counter()
    # random weights: 1 + exp confidences sit near 2, so a cut at 1 keeps every pixel
    written = export(record, conf_threshold=1.0)
    assert time.perf_counter() - start < 10
    assert len(written) == 3
    for w in written:
        saved = np.load(record.with_name(record.stem + ".predictions") / f"{w.ply.stem}.npz")
        images = saved["images"]
        cloud = trimesh.load(w.ply)
        assert len(cloud.vertices) == images.shape[0] * images.shape[1] * images.shape[2]
        np.testing.assert_array_equal(cloud.colors[:, :3], images.reshape(-1, 3))
        assert w.ply.parent == record.with_name(record.stem + ".exports")
        assert len(trimesh.load(w.glb).geometry) == 1 + images.shape[0]
    assert "preset synthetic_sparse's points" in capsys.readouterr().out
