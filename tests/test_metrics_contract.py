"""`Predictions` is the whole contract between the models and the metrics: the metrics read its
fields only (never `raw`, never the model family), and production code never imports the
`avggt_bench.testing` helpers."""

import ast
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import avggt_bench
from avggt_bench.data.synthetic import SyntheticConfig, render_scene
from avggt_bench.metrics import adapters
from avggt_bench.metrics.evaluate import evaluate_scene
from avggt_bench.models.factory import build_model
from avggt_bench.models.oracle import oracle_predictions
from avggt_bench.models.predictions import Predictions

PACKAGE = Path(avggt_bench.__file__).resolve().parent


def _imports(tree: ast.AST) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return out


def test_production_code_never_imports_the_testing_helpers():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "testing":
            continue
        names = _imports(ast.parse(path.read_text(encoding="utf-8")))
        if any(n == "avggt_bench.testing" or n.startswith("avggt_bench.testing.") for n in names):
            offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []


def test_metrics_never_read_native_outputs():
    readers = []
    for path in sorted((PACKAGE / "metrics").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "raw":
                readers.append(f"{path.name}:{node.lineno}")
    assert readers == []


@pytest.fixture(scope="module")
def scene():
    s = render_scene(SyntheticConfig(num_views=4, width=56, height=42, seed=3))
    points = oracle_predictions(s, "pi3").world_points[0].reshape(-1, 3).double()
    return replace(s, points=points)


PRESETS = {
    "relpose": {"task": "relpose"},
    "scannet": {"task": "scannet_recon", "outputs": {"conf_threshold": 0.2}},
    "points": {
        "task": "mv_recon",
        "alignment": {"type": "umeyama"},
        "metrics": ["acc", "comp"],
        "outputs": {"points_source": "depth_unproject"},
    },
    "depth": {"task": "video_depth", "alignment": "median"},
}


@pytest.mark.parametrize("name", ["vggt_small", "pi3_small"])
def test_a_models_metrics_do_not_change_without_its_native_outputs(scene, name):
    """The real adapter's output evaluates the same with `raw` emptied: nothing reads it."""
    model = build_model(name)
    with torch.no_grad():
        pred = model(scene.images.permute(0, 3, 1, 2).float() / 255.0)
    bare = replace(pred, raw={})
    for preset in PRESETS.values():
        a, b = evaluate_scene(pred, scene, preset), evaluate_scene(bare, scene, preset)
        assert a.status == b.status and a.message == b.message
        assert a.metrics == b.metrics and a.metrics
    assert evaluate_scene(pred, scene, PRESETS["relpose"]).outputs["family"] == model.family


def test_the_ground_truth_oracle_is_pi3_by_fields_alone(scene):
    pred = oracle_predictions(scene, "pi3", rotation_noise_deg=4.0)
    assert pred.raw == {} and pred.points_frame == "arbitrary"
    assert pred.conf_kind == "sigmoid" and pred.world_points_from_depth
    rot = evaluate_scene(pred, scene, {"task": "relpose", "thresholds": [3, 5]}).metrics
    # 3 of the 6 pairs hold the turned (last) camera: their rotation error is exactly 4°
    assert rot["rra@3"] == pytest.approx(50.0) and rot["rra@5"] == 100.0


def _hand_made(conf, kind, **fields):
    s, h, w = conf.shape
    w2c = torch.zeros(1, s, 3, 4, dtype=torch.float64)
    w2c[..., :3, :3] = torch.eye(3, dtype=torch.float64)
    w2c[0, :, 2, 3] = torch.arange(s, dtype=torch.float64)  # camera k at z = -k, no rotation
    k = torch.tensor([[10.0, 0, w / 2], [0, 10.0, h / 2], [0, 0, 1]], dtype=torch.float64)
    return Predictions(
        extrinsics=w2c,
        intrinsics=k.expand(1, s, 3, 3).clone(),
        depth=torch.full((1, s, h, w, 1), 2.0),
        depth_conf=conf[None],
        world_points=torch.randn(1, s, h, w, 3, generator=torch.Generator().manual_seed(0)),
        world_points_conf=conf[None],
        image_hw=(h, w),
        conf_kind=kind,
        **fields,
    )


def test_the_confidence_cut_follows_the_kind_of_confidence():
    vggt = _hand_made(torch.tensor([[[1.0, 2.999, 3.0, 7.0]]]), "exp_plus_one")
    assert adapters.confident(vggt).tolist() == [[[False, False, True, True]]]  # conf >= 3
    pi3 = _hand_made(torch.tensor([[[0.05, 0.1, 0.1001, 0.9]]], dtype=torch.float64), "sigmoid")
    assert adapters.confident(pi3).tolist() == [[[False, False, True, True]]]  # conf > 0.1
    assert adapters.confident(pi3, 0.5).tolist() == [[[False, False, False, True]]]
    assert adapters.confident(vggt, 2.0).tolist() == [[[False, True, True, True]]]
    with pytest.raises(ValueError, match="conf_kind"):
        _hand_made(torch.ones(1, 1, 1), "logits")


def test_which_point_map_is_read_follows_the_fields():
    conf = torch.ones(3, 2, 4)
    head = _hand_made(conf, "exp_plus_one")  # VGGT-like: points from a head of their own
    w2c = adapters.pred_w2c(head)
    unprojected = adapters.unproject(
        adapters.as_f64(head.intrinsics[0]), w2c, np.full((3, 2, 4), 2.0)
    )
    np.testing.assert_allclose(
        adapters.pred_points(head, "depth_unproject"), unprojected, atol=1e-12
    )
    np.testing.assert_array_equal(
        adapters.pred_points(head, "point_head", "first_camera"),
        adapters.as_f64(head.world_points[0]),
    )
    from_depth = _hand_made(conf, "sigmoid", points_frame="arbitrary", world_points_from_depth=True)
    world = adapters.as_f64(from_depth.world_points[0])
    np.testing.assert_array_equal(adapters.pred_points(from_depth, "depth_unproject"), world)
    # an arbitrary world is re-expressed in predicted camera 0
    moved = replace(from_depth, extrinsics=head.extrinsics.roll(1, dims=1))  # camera 0 at z=-2
    shifted = adapters.pred_points(moved, "point_head", "first_camera")
    np.testing.assert_allclose(shifted, world + np.array([0.0, 0.0, 2.0]), atol=1e-12)
