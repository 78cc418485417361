"""VGGT re-implementation: checkpoint layout, official test vector, shapes, bad input."""

import math

import pytest
import torch
from conftest import all_cores

from avggt_bench.errors import CheckpointError, ConfigError, DataError
from avggt_bench.models import build_model
from avggt_bench.models.checkpoint import load_state_dict_strict, read_manifest
from avggt_bench.models.vggt.model import VGGT, VGGT_1B, VGGT_SMALL
from avggt_bench.testing.weights import recipe_tensor

DATA = __import__("pathlib").Path(__file__).parent / "data"


def meta_model(arch, **kw):
    with torch.device("meta"):
        return VGGT(arch, **kw)


def test_vggt_1b_matches_the_official_manifest_key_for_key():
    manifest = read_manifest("vggt_1b_state_dict")
    assert len(manifest) == 1797
    ours = meta_model(VGGT_1B).state_dict()
    expected = {k: v for k, v in manifest.items() if not k.startswith("track_head.")}
    assert list(ours) == list(expected)  # same names, same order
    for key, (shape, dtype) in expected.items():
        assert tuple(ours[key].shape) == shape, key
        assert dtype == "float32"
    assert sum(v.numel() for v in ours.values()) == 1_190_596_120


def test_vggt_small_sizes_match_the_spec():
    state = meta_model(VGGT_SMALL).state_dict()
    assert len(state) == 1235
    assert sum(v.numel() for v in state.values()) == 195_819_416
    assert tuple(state["aggregator.patch_embed.blocks.0.attn.qkv.weight"].shape) == (1152, 384)
    assert tuple(state["camera_head.poseLN_modulation.1.weight"].shape) == (2304, 768)
    assert tuple(state["point_head.projects.0.weight"].shape) == (256, 768, 1, 1)


@pytest.fixture(scope="module")
def vggt_1b_official_vector():
    """VGGT-1B loaded strictly from a state dict built from the manifest (recipe weights)."""
    with all_cores():
        manifest = read_manifest("vggt_1b_state_dict")
        state = {k: recipe_tensor(k, shape, 0.03) for k, (shape, _) in manifest.items()}
        model = meta_model(VGGT_1B).to_empty(device="cpu").eval()
        skipped = load_state_dict_strict(model, state, skip_prefixes=("track_head.",))
        del state
        vector = torch.load(DATA / "vggt_1b_2x140x182.pt")
        with torch.inference_mode():
            pred = model(vector["inputs"])
        return model, skipped, pred, vector


def test_manifest_state_dict_loads_strictly_and_skips_only_the_track_head(vggt_1b_official_vector):
    model, skipped, _, _ = vggt_1b_official_vector
    assert skipped == ("track_head.",)
    key = "aggregator.global_blocks.23.attn.k_norm.bias"
    assert torch.equal(model.state_dict()[key], recipe_tensor(key, (64,), 0.03))


def test_outputs_equal_the_official_vggt_1b(vggt_1b_official_vector):
    _, _, pred, vector = vggt_1b_official_vector
    for name, ref in vector["outputs"].items():
        ours = pred[name]
        assert ours.shape == ref.shape and ours.dtype == ref.dtype, name
        # the thread-count noise floor is ~1e-6 of the range; a real bug is 1e-5..1e-2
        tol = 1e-5 * ref.abs().max().item()
        assert (ours - ref).abs().max().item() <= tol, name


def test_official_output_shapes_and_dtypes(vggt_1b_official_vector):
    _, _, pred, _ = vggt_1b_official_vector
    assert pred.pose_enc.shape == (1, 2, 9)
    assert len(pred.pose_enc_list) == 4 and torch.equal(pred.pose_enc_list[-1], pred.pose_enc)
    assert pred.depth.shape == (1, 2, 140, 182, 1) and pred.depth.dtype == torch.float32
    assert pred.world_points.shape == (1, 2, 140, 182, 3)
    assert pred.depth_conf.shape == pred.world_points_conf.shape == (1, 2, 140, 182)
    assert (pred.depth > 0).all() and (pred.depth_conf >= 1).all()
    assert pred.extrinsics.shape == (1, 2, 3, 4) and pred.extrinsics.dtype == torch.float64
    assert pred.intrinsics.shape == (1, 2, 3, 3) and pred.intrinsics.dtype == torch.float64
    assert pred.intrinsics[0, 0, 0, 2].item() == 91 and pred.intrinsics[0, 0, 1, 2].item() == 70


def test_vggt_small_shapes_batch_and_memory_lean(vggt_small):
    x = torch.rand(2, 3, 3, 56, 70, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        lean = vggt_small(x)
        vggt_small.memory_lean = False
        try:
            full = vggt_small(x)
        finally:
            vggt_small.memory_lean = True
        single = vggt_small(x[1])  # 4-D input = one scene
    assert lean.depth.shape == (2, 3, 56, 70, 1) and lean.pose_enc.shape == (2, 3, 9)
    assert lean.world_points.shape == (2, 3, 56, 70, 3)
    for name in ("pose_enc", "depth", "depth_conf", "world_points", "world_points_conf"):
        assert torch.equal(lean[name], full[name]), name  # lean storage changes memory only
        torch.testing.assert_close(single[name][0], lean[name][1], rtol=1e-4, atol=1e-5)


def test_memory_lean_keeps_only_the_head_layers(vggt_small):
    x = torch.rand(1, 2, 3, 28, 28)
    with torch.inference_mode():
        kept, _ = vggt_small.aggregator(x, keep=vggt_small.kept_layers())
        every, _ = vggt_small.aggregator(x, keep=None)
    assert [i for i, t in enumerate(kept) if t is not None] == [4, 11, 17, 23]
    assert all(t is not None for t in every)
    assert kept[23].shape == (1, 2, 5 + 4, 768)


def test_dpt_frame_chunking_changes_nothing(vggt_small):
    x = torch.rand(1, 10, 3, 28, 42, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        tokens, _ = vggt_small.aggregator(x, keep=vggt_small.kept_layers())
        chunked = vggt_small.depth_head(tokens, (28, 42), 5)
        vggt_small.depth_head.frames_chunk_size = 100
        try:
            whole = vggt_small.depth_head(tokens, (28, 42), 5)
        finally:
            vggt_small.depth_head.frames_chunk_size = 8
    torch.testing.assert_close(chunked[0], whole[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "shape, match",
    [
        ((2, 3, 100, 140), "not a multiple of the patch size 14"),
        ((2, 3, 140, 99), "not a multiple"),
        ((0, 3, 28, 28), "no images"),
        ((2, 1, 28, 28), r"RGB"),
        ((28, 28), r"\[S, 3, H, W\]"),
    ],
)
def test_bad_images_get_a_clear_error(vggt_small, shape, match):
    with pytest.raises(DataError, match=match):
        vggt_small(torch.rand(*shape))


def test_unknown_preset_and_override_suggest_valid_ones():
    with pytest.raises(
        ConfigError, match=r"unknown model preset 'vggt_smal'.*Did you mean 'vggt_small'"
    ):
        build_model("vggt_smal")
    with pytest.raises(ConfigError, match="unknown build_model override"):
        build_model("vggt_small", memory_leen=True)


def test_random_weights_are_deterministic_and_labelled(vggt_small):
    again = build_model("vggt_small")
    key = "aggregator.frame_blocks.3.mlp.fc1.weight"
    assert torch.equal(vggt_small.state_dict()[key], again.state_dict()[key])
    assert vggt_small.weights.random and vggt_small.weights.as_dict()["weights"] == "random"


def test_rope_known_values_and_relative_property():
    from avggt_bench.models.rope import RoPE2D

    rope = RoPE2D(100.0)
    t = torch.zeros(1, 1, 3, 64)
    t[..., 0] = 1.0  # first y channel (frequency 1)
    t[..., 32 + 1] = 1.0  # second x channel (frequency 100^(-2/32))
    pos = torch.tensor([[[0, 0], [3, 0], [0, 5]]])
    out = rope(t, pos, table_size=6)
    # position (0, 0) is the identity
    torch.testing.assert_close(out[0, 0, 0], t[0, 0, 0])
    # y = 3 rotates channel pair (0, 16) by 3 rad; the x half is untouched at x = 0
    assert math.isclose(out[0, 0, 1, 0].item(), math.cos(3.0), abs_tol=1e-6)
    assert math.isclose(out[0, 0, 1, 16].item(), math.sin(3.0), abs_tol=1e-6)
    assert out[0, 0, 1, 33].item() == 1.0
    # x = 5 rotates channel pair (33, 49) by 5 * 100^(-2/32)
    angle = 5 * 100 ** (-2 / 32)
    assert math.isclose(out[0, 0, 2, 33].item(), math.cos(angle), abs_tol=1e-6)
    assert math.isclose(out[0, 0, 2, 49].item(), math.sin(angle), abs_tol=1e-6)
    # dot products depend only on the position difference
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 64, generator=g), torch.randn(1, 1, 1, 64, generator=g)

    def dot(pq, pk):
        rq = rope(q, torch.tensor([[pq]]), 20)
        rk = rope(k, torch.tensor([[pk]]), 20)
        return (rq * rk).sum().item()

    assert math.isclose(dot((2, 3), (5, 7)), dot((10, 4), (13, 8)), rel_tol=1e-5)
    # the table uses 1 / pow(100, e), never pow(100, -e)
    cos, _ = rope.tables(4, 32, torch.device("cpu"), torch.float32)
    inv = 1.0 / (100.0 ** (torch.arange(0, 32, 2).float() / 32))
    assert torch.equal(cos[2, :16], (2.0 * inv).cos())


def test_checkpoint_mismatch_lists_keys_by_name(vggt_small):
    state = {k: v.clone() for k, v in vggt_small.state_dict().items()}
    state["aggregator.global_blocks.0.attn.qkv.weight"] = torch.zeros(10, 384)
    state["aggregator.stray.weight"] = torch.zeros(3)
    del state["depth_head.norm.bias"]
    target = VGGT(VGGT_SMALL)
    with pytest.raises(CheckpointError) as err:
        load_state_dict_strict(target, state)
    msg = str(err.value)
    assert "1 missing keys: depth_head.norm.bias" in msg
    assert "1 unexpected keys: aggregator.stray.weight" in msg
    assert "aggregator.global_blocks.0.attn.qkv.weight: (10, 384) vs (1152, 384)" in msg


def test_checkpoint_files_load_from_safetensors_and_pt(tmp_path, vggt_small):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in vggt_small.state_dict().items()}
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    model = build_model("vggt_small", checkpoint=str(path))
    assert model.weights.source == str(path) and len(model.weights.sha256) == 64
    assert not model.weights.random
    key = "camera_head.pose_branch.fc2.bias"
    assert torch.equal(model.state_dict()[key], state[key])
    # a .pt holding a training checkpoint {"model": state} and a stray track head
    small = torch.nn.Linear(3, 2)
    pt = tmp_path / "tiny.pt"
    torch.save({"model": {**small.state_dict(), "track_head.x": torch.zeros(1)}}, pt)
    from avggt_bench.models.checkpoint import load_checkpoint

    fresh = torch.nn.Linear(3, 2)
    info = load_checkpoint(fresh, str(pt), skip_prefixes=("track_head.",))
    assert info.skipped_prefixes == ("track_head.",)
    assert torch.equal(fresh.weight, small.weight)


def test_missing_checkpoint_and_offline_hub_give_a_fix(tmp_path):
    with pytest.raises(CheckpointError, match="neither an existing file nor a hub id"):
        build_model("vggt_small", checkpoint=str(tmp_path / "nope.safetensors"))
    with pytest.raises(CheckpointError, match=r"model.checkpoint=/path/to/model.safetensors"):
        build_model("vggt_small", checkpoint="facebook/VGGT-1B")
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        build_model("vggt_small", checkpoint=str(bad))
