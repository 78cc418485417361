"""π³ re-implementation: checkpoint layout, official test vector, geometry, equivariance."""

from pathlib import Path

import pytest
import torch
from conftest import all_cores

from avggt_bench.attention.config import resolve_routes
from avggt_bench.errors import CheckpointError, ConfigError, DataError
from avggt_bench.flops import pi3_cost
from avggt_bench.models import build_model
from avggt_bench.models.checkpoint import load_state_dict_strict, read_manifest
from avggt_bench.models.pi3.model import PI3, PI3_SMALL, Pi3
from avggt_bench.testing.weights import recipe_tensor

DATA = Path(__file__).parent / "data"


def test_pi3_matches_the_official_manifest():
    manifest = read_manifest("pi3_state_dict")
    assert len(manifest) == 1210
    with torch.device("meta"):
        state = Pi3(PI3).state_dict()
    assert set(state) == set(manifest)
    for key, (shape, _) in manifest.items():
        assert tuple(state[key].shape) == shape, key
    assert sum(v.numel() for k, v in state.items() if not k.startswith("image_")) == 958_696_732


@pytest.fixture(scope="module")
def pi3_official_vector():
    with all_cores():
        manifest = read_manifest("pi3_state_dict")
        state = {
            k: recipe_tensor(k, s, 0.02)
            for k, (s, _) in manifest.items()
            if not k.startswith("image_")
        }
        with torch.device("meta"):
            model = Pi3(PI3)
        model = model.to_empty(device="cpu")
        model.init_constants()
        load_state_dict_strict(model, state, optional=("image_mean", "image_std"))
        vector = torch.load(DATA / "pi3_2x140x182.pt")
        with torch.inference_mode():
            pred = model.eval()(vector["inputs"])
        return pred, vector


def test_outputs_equal_the_official_pi3(pi3_official_vector):
    pred, vector = pi3_official_vector
    for name, ref in vector["outputs"].items():
        ours = pred[name]
        assert ours.shape == ref.shape and ours.dtype == ref.dtype, name
        assert (ours - ref).abs().max().item() <= 1e-5 * ref.abs().max().item(), name


@pytest.fixture(scope="module")
def pi3_small():
    return build_model("pi3_small")


def run(model, x):
    with torch.inference_mode():
        return model(x)


def test_shapes_rotations_and_world_points(pi3_small):
    x = torch.rand(1, 3, 3, 42, 56, generator=torch.Generator().manual_seed(0))
    pred = run(pi3_small, x)
    assert pred["local_points"].shape == (1, 3, 42, 56, 3) and pred["conf"].shape == (
        1,
        3,
        42,
        56,
        1,
    )
    poses = pred["camera_poses"]
    assert poses.shape == (1, 3, 4, 4)
    rot = poses[..., :3, :3].double()
    eye = torch.eye(3, dtype=torch.float64).expand_as(rot)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    assert torch.allclose(torch.det(rot), torch.ones(1, 3, dtype=torch.float64), atol=1e-5)
    assert torch.equal(poses[..., 3, :], torch.tensor([0.0, 0, 0, 1]).expand(1, 3, 4))
    world = (
        torch.einsum("bnij,bnhwj->bnhwi", rot, pred["local_points"].double())
        + poses[..., None, None, :3, 3]
    )
    torch.testing.assert_close(pred["points"].double(), world, rtol=1e-5, atol=1e-5)
    # the common schema: w2c is the inverse of the c2w poses; depth is the local z
    w2c = pred.extrinsics[0]
    back = torch.cat(
        (w2c, torch.tensor([[[0.0, 0, 0, 1]]], dtype=torch.float64).expand(3, 1, 4)), 1
    )
    torch.testing.assert_close(
        back @ poses[0].double(),
        torch.eye(4, dtype=torch.float64).expand(3, 4, 4),
        atol=1e-6,
        rtol=0,
    )
    assert torch.equal(pred.depth[..., 0], pred["local_points"][..., 2])
    assert pred.points_frame == "arbitrary" and (pred.depth_conf <= 1).all()


def test_estimated_intrinsics_recover_a_pinhole_camera():
    from avggt_bench.models.pi3.model import estimate_intrinsics

    height, width, fx, fy = 30, 40, 55.0, 50.0
    v, u = torch.meshgrid(
        torch.arange(height, dtype=torch.float64),
        torch.arange(width, dtype=torch.float64),
        indexing="ij",
    )
    z = 2 + torch.rand(height, width, dtype=torch.float64)
    local = torch.stack(((u - 20) / fx * z, (v - 15) / fy * z, z), -1)[None, None]
    k = estimate_intrinsics(local)[0, 0]
    assert k[0, 0].item() == pytest.approx(fx) and k[1, 1].item() == pytest.approx(fy)
    assert (k[0, 2].item(), k[1, 2].item()) == (20.0, 15.0)


@pytest.mark.parametrize("attention", ["dense", "api3_4"])
def test_permuting_the_views_permutes_every_output(attention):
    model = build_model("pi3_small", attention=attention)
    x = torch.rand(1, 4, 3, 42, 56, generator=torch.Generator().manual_seed(1))
    perm = torch.tensor([2, 0, 3, 1])
    a, b = run(model, x), run(model, x[:, perm])
    for name in ("local_points", "conf", "camera_poses"):
        torch.testing.assert_close(b[name], a[name][:, perm], rtol=1e-4, atol=1e-5)


def test_a_first_frame_rule_breaks_equivariance_negative_control():
    model = build_model("pi3_small", attention={"name": "api3_4", "keep_first_frame": True})
    assert "keep_first_frame=1" in model.route_strings[-1]
    x = torch.rand(1, 4, 3, 42, 56, generator=torch.Generator().manual_seed(1))
    perm = torch.tensor([2, 0, 3, 1])  # moves view 0
    a, b = run(model, x), run(model, x[:, perm])
    diff = (b["local_points"] - a["local_points"][:, perm]).abs().max().item()
    assert diff > 1e-3


def test_api3_routes_and_cost():
    model = build_model("pi3_small", attention="api3_9")
    assert (
        model.route_strings
        == ["frame"] * 10 + ["sga(sigma=9,diag=1,mean=1,keep_first_frame=0)"] * 8
    )
    dense = pi3_cost(PI3, 800, 28, 37, ["global"] * 18)
    fast = pi3_cost(PI3, 800, 28, 37, resolve_routes("api3_9", "pi3", 18))
    assert dense.total / 1e15 == pytest.approx(26.46, abs=0.005)
    assert fast.total / 1e15 == pytest.approx(2.39, abs=0.005)
    assert (dense.total - dense.components["global_attention"]) / 1e15 == pytest.approx(
        0.90, abs=0.005
    )
    assert fast.global_layers[10].info["kept"] == 108_000
    assert PI3_SMALL.dim == 384 and PI3_SMALL.depth == 36


def test_pi3_checkpoint_tolerates_missing_constants_but_not_other_keys(pi3_small):
    state = {k: v.clone() for k, v in pi3_small.state_dict().items() if not k.startswith("image_")}
    target = build_model("pi3_small")
    load_state_dict_strict(target, state, optional=("image_mean", "image_std"))
    assert torch.equal(target.image_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    state["decoder.3.ls1.gamma"] = torch.zeros(7)
    with pytest.raises(CheckpointError, match=r"decoder.3.ls1.gamma: \(7,\) vs \(384,\)"):
        load_state_dict_strict(target, state, optional=("image_mean", "image_std"))
    half = {k: v.to(torch.bfloat16) for k, v in pi3_small.state_dict().items()}
    load_state_dict_strict(target, half)  # bf16 checkpoints are cast to float32
    assert target.register_token.dtype == torch.float32


def test_pi3_bad_input(pi3_small):
    with pytest.raises(DataError, match="not a multiple of the patch size"):
        run(pi3_small, torch.rand(1, 2, 3, 40, 56))
    with pytest.raises(ConfigError, match="Did you mean 'pi3_small'"):
        build_model("pi3_smal")


def test_sdpa_policy_switch_changes_kernels_not_results(pi3_small):
    fused = build_model("pi3_small", sdpa_policy="default")
    assert pi3_small.mixer.policy == "pi3" and fused.mixer.policy == "default"
    assert fused.routes[0].mixer.policy == "default"
    x = torch.rand(1, 2, 3, 28, 42, generator=torch.Generator().manual_seed(5))
    a, b = run(pi3_small, x), run(fused, x)
    torch.testing.assert_close(a["local_points"], b["local_points"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="sdpa_policy='fast'"):
        build_model("pi3_small", sdpa_policy="fast")
