"""End to end on the synthetic protocol presets (conf/dataset/synthetic_*.yaml): the loader's
scenes, predictions derived from their ground truth with errors of a known size, then
`evaluate_scene` and `aggregate` exactly as the job calls them (`preset.as_dict()` as `spec`).
Every expected value is worked out by hand from the constructed error, not read from the code."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from avggt_bench.data.presets import load_protocol_preset
from avggt_bench.data.protocol_scenes import ProtocolDataset
from avggt_bench.data.scene import Scene
from avggt_bench.metrics import points as P
from avggt_bench.metrics.aggregate import aggregate
from avggt_bench.metrics.evaluate import evaluate_scene
from avggt_bench.metrics.evaluation_protocol import Protocol
from avggt_bench.metrics.pose import LEGACY
from avggt_bench.metrics.results import SceneResult
from avggt_bench.testing.predictions import predictions_from_scene

SMALL = ["dataset.width=56", "dataset.height=42"]
Q = Rotation.from_euler("xyz", [15, 40, -25], degrees=True).as_matrix()
V = np.array([0.5, 1.0, -2.0])
needs_open3d = pytest.mark.skipif(P.open3d_version() is None, reason="Open3D not importable")


def load(name, *overrides):
    preset = load_protocol_preset(name, [*SMALL, *overrides])
    items = list(ProtocolDataset(preset).scenes())
    scenes = [s for s in items if isinstance(s, Scene)]
    return preset.as_dict(), scenes, items


def run(spec, scenes, make_pred):
    results = [evaluate_scene(make_pred(s), s, spec) for s in scenes]
    return results, aggregate(results, spec)


def turn_last_camera(pred, deg):
    """The last camera turned by `deg` about an oblique axis through its centre."""
    rot = Rotation.from_rotvec(math.radians(deg) * np.array([0.6, 0.0, 0.8])).as_matrix()
    e = pred.extrinsics[0, -1].numpy()
    centre = -e[:, :3].T @ e[:, 3]
    e[:, :3] = rot @ e[:, :3]
    e[:, 3] = -e[:, :3] @ centre
    pred.extrinsics[0, -1] = torch.from_numpy(e)
    return pred


def test_sparse_relpose_one_turned_camera_per_scene():
    """3 scenes x 10 views, pooled: in each, the 9 of 45 pairs holding the last camera have
    e_R = 10.5°, the rest 0. With VGGT's official order E_i·inv(E_j) (the preset's `vggt`, alias
    `camera_i`: the baseline expressed in camera i of the pair) e_t = 0 everywhere, so RRA@3 =
    RRA@5 = 80, RRA@15 = RRA@30 = 100, RTA = 100; AUC@T = mean over τ = 1..T of the fraction below
    τ: AUC@3 = AUC@5 = 80, AUC@15 = (10·0.8 + 5)/15, AUC@30 = (10·0.8 + 20)/30."""
    spec, scenes, _ = load("synthetic_sparse")
    assert len(scenes) == 3 and spec["aggregation"] == "pooled_pairs"
    assert spec["compat"]["pair_order"] == "vggt"
    _, perfect = run(spec, scenes, lambda s: predictions_from_scene(s, "vggt", scale=2.0))
    assert all(v == 100.0 for v in perfect["metrics"].values())
    turned = lambda s: turn_last_camera(predictions_from_scene(s, scale=2.0), 10.5)  # noqa: E731
    results, agg = run(spec, scenes, turned)
    assert all(r.status == "ok" for r in results)
    assert agg["groups"]["pose"]["n_pairs"] == 135
    m = agg["metrics"]
    for tau in (3, 5):
        assert m[f"rra@{tau}"] == pytest.approx(80.0)
        assert m[f"auc@{tau}"] == pytest.approx(80.0)
    for tau in (15, 30):
        assert m[f"rra@{tau}"] == 100.0
    assert all(m[f"rta@{tau}"] == 100.0 for tau in (3, 5, 15, 30))
    assert m["auc@15"] == pytest.approx(100 * (10 * 0.8 + 5) / 15)
    assert m["auc@30"] == pytest.approx(100 * (10 * 0.8 + 20) / 30)
    spec_i = {**spec, "compat": {**spec.get("compat", {}), "pair_order": "camera_i"}}
    assert run(spec_i, scenes, turned)[1]["metrics"] == m  # the alias: the same numbers
    # the legacy form inv(E_i)·E_j also moves the translation of the 9 pairs with the turned
    # camera (its baseline is not expressed in one camera); the 36 other pairs stay exact
    legacy = {**spec, "compat": {**spec.get("compat", {}), "pair_order": LEGACY}}
    old = run(legacy, scenes, turned)[1]["metrics"]
    assert all(80.0 <= old[f"rta@{tau}"] < 100.0 for tau in (3, 5))
    assert 80.0 <= old["auc@15"] < m["auc@15"]
    assert old["rra@5"] == pytest.approx(80.0)  # rotation errors agree between the forms


def uncorrelated_offsets(centres, rms, seed):
    """Offsets δ_i with Σδ_i = 0 and Σ(y_i − ȳ)δ_iᵀ = 0, RMS length `rms`: projected onto the
    orthogonal complement of span{1, y_x, y_y, y_z} over the frames."""
    n = len(centres)
    basis = np.column_stack((np.ones(n), centres))
    q, _ = np.linalg.qr(basis)
    d = np.random.default_rng(seed).normal(size=(n, 3))
    d -= q @ (q.T @ d)
    return d * rms / math.sqrt(np.mean(np.sum(d * d, axis=1)))


def test_trajectory_noise_of_known_size():
    """With centres y + δ (δ as above, exact rotations) in any similarity-transformed world,
    Umeyama gives R = I and c = a/(a + b), a = mean‖y − ȳ‖², b = mean‖δ‖², hence
    ATE² = (c − 1)²a + c²b = ab/(a + b); RPE-trans = RMS of c(Δy + Δδ) − Δy over consecutive
    frames; ARE = RPE-rot = 0."""
    spec, scenes, _ = load("synthetic_trajectory")
    expected = []

    def make(scene):
        c2w = scene.camera_to_world().numpy()
        y = c2w[:, :, 3]
        delta = uncorrelated_offsets(y, 0.05, seed=len(expected))
        a, b = np.mean(np.sum((y - y.mean(0)) ** 2, 1)), np.mean(np.sum(delta**2, 1))
        c = a / (a + b)
        step = c * np.diff(y + delta, axis=0) - np.diff(y, axis=0)
        expected.append(
            {"ate": math.sqrt(a * b / (a + b)), "rpe": math.sqrt(np.mean(np.sum(step**2, 1)))}
        )
        w2c = scene.extrinsics.numpy().copy()
        w2c[:, :, 3] = -np.einsum("sij,sj->si", w2c[:, :, :3], y + delta)
        noisy = Scene(**{**scene.__dict__, "extrinsics": torch.from_numpy(w2c)})
        return predictions_from_scene(noisy, "pi3", scale=3.0, rotation=Q, translation=V)

    results, agg = run(spec, scenes, make)
    for r, e in zip(results, expected, strict=True):
        assert r.status == "ok", r.message
        assert r.metrics["ate"] == pytest.approx(e["ate"], rel=1e-9)
        assert r.metrics["rpe_trans"] == pytest.approx(e["rpe"], rel=1e-9)
        assert r.metrics["are"] < 1e-6 and r.metrics["rpe_rot"] < 1e-6
    assert agg["metrics"]["ate"] == pytest.approx(np.mean([e["ate"] for e in expected]))
    assert agg["groups"]["trajectory"]["n_evaluated"] == len(scenes) == 2


@needs_open3d
def test_mv_recon_similarity_invariance_and_known_offset():
    spec, scenes, _ = load("synthetic_mv_recon")
    results, agg = run(
        spec, scenes, lambda s: predictions_from_scene(s, "pi3", scale=0.4, rotation=Q)
    )
    for r in results:
        assert r.status == "ok", r.message
        assert r.groups["points"].params["umeyama"]["scale"] == pytest.approx(2.5)
    for k in ("acc", "acc_med", "comp", "comp_med"):
        assert agg["metrics"][k] < 1e-9
    assert agg["metrics"]["nc"] == pytest.approx(1.0, abs=1e-9)
    # known offset: metric prediction in the ground-truth world moved along z by δ, no alignment
    offsets = []

    def shifted(scene):
        pred = predictions_from_scene(scene, "pi3")
        world = pred.world_points[0].numpy().reshape(-1, 3)[scene.valid.numpy().reshape(-1)]
        second = cKDTree(world).query(world, k=2)[0][:, 1]
        offsets.append(0.25 * second[second > 0].min())  # below half the point spacing
        pred.world_points += torch.tensor([0.0, 0.0, offsets[-1]], dtype=pred.world_points.dtype)
        return pred

    none = {**spec, "alignment": {**spec["alignment"], "type": "none"}}
    results, agg = run(none, scenes, shifted)
    for r, d in zip(results, offsets, strict=True):
        assert r.metrics["acc"] == pytest.approx(d, abs=1e-12)
        assert r.metrics["comp"] == pytest.approx(d, abs=1e-12)
    assert agg["metrics"]["acc"] == pytest.approx(np.mean(offsets), abs=1e-12)


def test_video_depth_known_error_on_a_quarter_of_the_pixels():
    """Depth ×(1 + ε) on every fourth pixel of a checker pattern, then an arbitrary scale and
    shift: the exact L1 scale&shift fit keeps the three-quarter majority exact, so per scene
    AbsRel = ε·n_bad/n_valid and δ1 = 1 (ε < 0.25); pixel-weighted over scenes."""
    spec, scenes, _ = load("synthetic_video_depth")
    eps, counts = 0.1, []

    def make(scene):
        d = scene.depth.double().numpy()
        s, h, w = d.shape
        bad = (np.add.outer(np.arange(h), np.arange(w)) % 4 == 0)[None].repeat(s, 0)
        pred = predictions_from_scene(scene, "vggt", depth=np.where(bad, d * (1 + eps), d))
        pred.depth = pred.depth * 1.7 + 0.3
        valid = scene.valid.numpy()
        counts.append((int((bad & valid).sum()), int(valid.sum())))
        return pred

    results, agg = run(spec, scenes, make)
    for r, (n_bad, n) in zip(results, counts, strict=True):
        assert r.status == "ok", r.message
        assert r.metrics["abs_rel"] == pytest.approx(eps * n_bad / n, rel=1e-9)
        assert r.metrics["delta1"] == 1.0
        assert r.groups["depth"].weight == n
    total_bad, total = map(sum, zip(*counts, strict=True))
    assert agg["metrics"]["abs_rel"] == pytest.approx(eps * total_bad / total, rel=1e-9)


def test_faults_preset_statuses_dropped_frames_and_counts():
    """Frame 3 of each scene has a NaN pose (dropped by the loader, recorded per scene); the
    static scene cannot be Sim(3)-aligned: degenerate status, excluded from the mean, counted."""
    spec, scenes, items = load("synthetic_faults")
    assert len(items) == 2 and all(len(s.dropped) == 1 for s in scenes)
    results, agg = run(
        spec, scenes, lambda s: predictions_from_scene(s, "pi3", scale=2.0, rotation=Q)
    )
    by_id = {r.scene_id: r for r in results}
    assert by_id["seed0-walk"].status == "ok" and by_id["seed0-walk"].metrics["ate"] < 1e-9
    static = by_id["seed1-static"]
    assert static.status == "degenerate_alignment" and math.isnan(static.metrics["ate"])
    for r in results:
        assert r.as_dict()["dropped"] == [{"frame": "3", "reason": "nan_pose"}]
    assert agg["n_ok"] == 1 and agg["n_failed"] == 1 and agg["n_scenes"] == 2
    assert agg["not_evaluated"][0]["scene"] == "seed1-static"
    assert agg["metrics"]["ate"] == by_id["seed0-walk"].metrics["ate"]


def test_dense_relpose_bad_input_and_the_meaningful_flag():
    """All pairs counted; a frame-count mismatch and NaN predictions become statuses in the same
    sweep; `meaningful=False` (random weights) marks the summary without changing the numbers."""
    spec, scenes, _ = load("synthetic_dense", "dataset.frames=40")
    (scene,) = scenes
    good = evaluate_scene(predictions_from_scene(scene, scale=4.0), scene, spec)
    assert good.groups["pose"].params["n_pairs"] == 780
    short = evaluate_scene(predictions_from_scene(scene.subset(range(39))), scene, spec)
    assert short.status == "invalid_input" and "39 predicted frames for 40" in short.message
    nan = predictions_from_scene(scene)
    nan.extrinsics[0, 5] = float("nan")
    failed = evaluate_scene(nan, scene, spec)
    assert failed.metrics["auc@30"] == pytest.approx(100 * (780 - 39) / 780)
    skipped = SceneResult.skipped("seed9-orbit", "synthetic", "missing_frames")
    agg = aggregate([good, short, failed, skipped], spec, meaningful=False, note="random weights")
    assert agg["meaningful"] is False and agg["note"] == "random weights"
    assert (agg["n_ok"], agg["n_failed"], agg["n_skipped"]) == (2, 1, 1)
    assert agg["groups"]["pose"]["n_pairs"] == 1560
    assert agg["metrics"]["auc@30"] == pytest.approx(100 * (1560 - 39) / 1560)
    assert aggregate([good], spec)["meaningful"] is True


@pytest.mark.parametrize(
    "name",
    [
        "synthetic_trajectory",
        "synthetic_faults",
        pytest.param("synthetic_dense", marks=pytest.mark.slow),  # 6 s: 40 frames of relpose
    ],
)
def test_protocol_built_once_gives_the_same_results_as_the_preset(name, monkeypatch):
    """The job's typed `Protocol`, built once from the preset, is passed to every scene and to
    `aggregate`: nothing re-parses the preset, and every status, metric and parameter is the same
    as when each call validates the preset mapping itself."""
    spec, scenes, _ = load(name)

    def make(scene):
        return predictions_from_scene(scene, "pi3", scale=2.0, rotation=Q, translation=V)

    by_dict, agg_dict = run(spec, scenes, make)
    proto = Protocol.from_preset(spec)
    calls = []
    original = Protocol.from_preset.__func__

    def counted(cls, preset):
        calls.append(preset)
        return original(cls, preset)

    monkeypatch.setattr(Protocol, "from_preset", classmethod(counted))
    by_proto, agg_proto = run(proto, scenes, make)
    assert calls == []
    assert len(by_proto) == len(by_dict) == len(scenes) > 0
    for a, b in zip(by_proto, by_dict, strict=True):
        da, db = a.as_dict(), b.as_dict()
        for d in (da, db):
            d.pop("timings_s")
            for g in d["groups"].values():
                g.pop("seconds")
        assert da == db
    assert agg_proto == agg_dict
    with pytest.raises(dataclasses.FrozenInstanceError):
        proto.task = "relpose"
