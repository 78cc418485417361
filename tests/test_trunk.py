"""The alternating frame/global trunk shared by VGGT and π³, against a slow per-frame reference."""

import pytest
import torch

from avggt_bench.attention.base import DenseMixer
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import build_route
from avggt_bench.models.layers import Block
from avggt_bench.models.pi3.model import PI3_SMALL, Pi3
from avggt_bench.models.rope import RoPE2D
from avggt_bench.models.trunk import checked_routes, run_trunk

DIM, HEADS, LAYERS, GRID = 16, 2, 3, (2, 3)


class CountingMixer(DenseMixer):
    def __init__(self) -> None:
        super().__init__("default")
        self.calls = 0

    def __call__(self, q, k, v, ctx):
        self.calls += 1
        return super().__call__(q, k, v, ctx)


class RecordingRoute:
    """A dense global route that records what the trunk hands it."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def run(self, block, x, pos, layout):
        self.seen.append((block, tuple(x.shape), pos.clone(), layout))
        return block(x, pos, layout)


def blocks(n: int, seed: int) -> list[Block]:
    torch.manual_seed(seed)
    rope = RoPE2D(100.0)
    out = [Block(DIM, HEADS, qk_norm=True, rope=rope) for _ in range(n)]
    for b in out:  # LayerScale 1e-5 would hide a wrong attention; make every branch count
        b.ls1.gamma.data.fill_(0.5)
        b.ls2.gamma.data.fill_(0.5)
    return out


def reference_positions(h: int, w: int, num_special: int) -> torch.Tensor:
    """One frame's (y, x): special tokens at (0, 0), patch (r, c) at (r + 1, c + 1)."""
    rows = [[0, 0]] * num_special + [[r + 1, c + 1] for r in range(h) for c in range(w)]
    return torch.tensor(rows)


def reference_trunk(special, patches, batch, frame_blocks, global_blocks, num_special):
    """Frame attention one frame at a time, global attention over the concatenated frames."""
    tokens = torch.cat((*special, patches), dim=1)
    frames, per = tokens.shape[0] // batch, tokens.shape[1]
    pos = reference_positions(*GRID, num_special)
    one = TokenLayout(frames=1, grid=GRID, num_special=num_special)
    scene = TokenLayout(frames=frames, grid=GRID, num_special=num_special)
    layers = []
    for frame_block, global_block in zip(frame_blocks, global_blocks, strict=True):
        tokens = torch.cat([frame_block(t[None], pos[None], one) for t in tokens])
        frame_out = tokens.reshape(batch, frames, per, DIM)
        flat = tokens.reshape(batch, frames * per, DIM)
        tokens = global_block(flat, pos.repeat(frames, 1)[None].expand(batch, -1, -1), scene)
        layers.append(torch.cat((frame_out, tokens.reshape(batch, frames, per, DIM)), dim=-1))
        tokens = tokens.reshape(batch * frames, per, DIM)
    return layers


@pytest.mark.parametrize("num_special", [0, 5])
def test_trunk_equals_the_per_frame_reference_and_keeps_only_the_asked_layers(num_special):
    batch, frames = 2, 3
    g = torch.Generator().manual_seed(1)
    n = batch * frames
    # two groups of special tokens, as VGGT's camera + registers, or none
    special = (
        (torch.randn(n, 1, DIM, generator=g), torch.randn(n, num_special - 1, DIM, generator=g))
        if num_special
        else ()
    )
    patches = torch.randn(n, GRID[0] * GRID[1], DIM, generator=g)
    frame_blocks, global_blocks = blocks(LAYERS, 2), blocks(LAYERS, 3)
    routes = [build_route("global") for _ in range(LAYERS)]
    with torch.no_grad():
        expected = reference_trunk(
            special, patches, batch, frame_blocks, global_blocks, num_special
        )
        out = run_trunk(
            special, patches, batch, GRID, frame_blocks, global_blocks, routes, keep={0, 2}
        )
    assert out.layers[1] is None
    for i in (0, 2):
        torch.testing.assert_close(out.layers[i], expected[i], rtol=1e-5, atol=1e-5)
    assert out.layout == TokenLayout(frames=frames, grid=GRID, num_special=num_special)
    assert torch.equal(out.positions, reference_positions(*GRID, num_special).expand(n, -1, -1))


def test_each_global_layer_runs_through_its_own_route_and_frames_use_the_given_mixer():
    batch, frames = 1, 2
    patches = torch.randn(batch * frames, GRID[0] * GRID[1], DIM)
    special = (torch.randn(batch * frames, 2, DIM),)
    frame_blocks, global_blocks = blocks(LAYERS, 4), blocks(LAYERS, 5)
    routes = [RecordingRoute() for _ in range(LAYERS)]
    mixer = CountingMixer()
    with torch.no_grad():
        run_trunk(
            special,
            patches,
            batch,
            GRID,
            frame_blocks,
            global_blocks,
            routes,
            keep=(),
            reference_frame=True,
            frame_mixer=mixer,
        )
    assert mixer.calls == LAYERS
    for g, route in enumerate(routes):
        ((block, shape, pos, layout),) = route.seen
        assert block is global_blocks[g]
        assert shape == (batch, frames * 8, DIM)
        assert layout == TokenLayout(frames=frames, grid=GRID, num_special=2, reference_frame=True)
        assert torch.equal(pos[0], reference_positions(*GRID, 2).repeat(frames, 1))


def test_trunk_and_models_refuse_a_wrong_number_of_routes():
    frame_blocks, global_blocks = blocks(2, 6), blocks(2, 7)
    with pytest.raises(ValueError, match="one of each per layer"):
        run_trunk((), torch.zeros(2, 6, DIM), 1, GRID, frame_blocks, global_blocks, [], keep=())
    with pytest.raises(ValueError, match="expected 4 routes, got 3"):
        checked_routes([build_route("global")] * 3, 4)
    with torch.device("meta"):
        model = Pi3(PI3_SMALL)
    with pytest.raises(ValueError, match="expected 18 routes, got 17"):
        model.set_routes([build_route("global")] * 17)


def test_pi3_frame_blocks_attend_with_the_models_own_sdpa_policy():
    """π³'s frame attention (even decoder blocks) goes through the model's mixer, as before the
    loop was shared: 18 frame layers, one mixer call each."""
    torch.manual_seed(0)
    model = Pi3(PI3_SMALL).eval()
    spy = CountingMixer()
    spy.policy = model.mixer.policy
    model.mixer = spy
    with torch.no_grad():
        z, pos, layout = model.decode(torch.rand(1, 2, 3, 28, 42))
    assert spy.calls == model.num_global_layers
    assert z.shape == (2, 5 + 2 * 3, 2 * PI3_SMALL.dim)
    assert layout == TokenLayout(frames=1, grid=(2, 3), num_special=5)
    assert pos.shape == (2, 11, 2)
