"""Each built-in route's `reference` method (the seam's exact slow path) against its fast path, and
each route answers the cost model itself."""

import pytest
import torch

from avggt_bench.attention.base import AttentionContext, DenseMixer
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.methods.fastvggt import match, partition, reduce_tokens, restore_tokens
from avggt_bench.attention.routes import build_route, softmax_attention

LAYOUT = TokenLayout(3, (4, 5), 5, reference_frame=True)


def qkv(layout=LAYOUT, heads=2, d=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shape = (1, heads, layout.num_tokens, d)
    return tuple(torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(3))


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_global_reference_is_dense_softmax():
    q, k, v = qkv()
    route = build_route("global")
    close(route.reference(q, k, v, AttentionContext(LAYOUT)), DenseMixer()(q, k, v, None))


def test_frame_reference_is_block_diagonal_attention():
    q, k, v = qkv()
    frame = torch.arange(LAYOUT.num_tokens) // LAYOUT.tokens_per_frame
    mask = frame[:, None] == frame[None, :]
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    expected = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1) @ v
    close(build_route("frame").reference(q, k, v, AttentionContext(LAYOUT)), expected)


@pytest.mark.parametrize("spec", ["mean", "mean(scope=per_frame)", "mean(include_special=1)"])
def test_mean_reference_equals_its_mixer(spec):
    q, k, v = qkv()
    route = build_route(spec)
    ctx = AttentionContext(LAYOUT)
    # the mixer sums its means in float32 whatever the input dtype: float32 tolerances
    fast, slow = route.mixer(q, k, v, ctx), route.reference(q, k, v, ctx)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "spec", ["sga(sigma=4,diag=1,mean=1)", "sga(sigma=9,diag=0,mean=0,keep_first_frame=0)"]
)
def test_sga_reference_equals_its_mixer(spec):
    q, k, v = qkv()
    route = build_route(spec)
    ctx = AttentionContext(LAYOUT, k_unrotated=k)
    close(route.mixer(q, k, v, ctx), route.reference(q, k, v, ctx))


def test_block_sparse_reference_equals_the_gather_kernel():
    q, k, v = qkv()
    route = build_route("block_sparse(rho=0.5,tau=0.5,q_block=16,k_block=8,kernel=gather)")
    ctx = AttentionContext(LAYOUT)
    close(route.mixer(q, k, v, ctx), route.reference(q, k, v, ctx))


def test_merge_reference_equals_the_plan_path():
    q, k, v = qkv()
    x = torch.randn(1, LAYOUT.num_tokens, 16, generator=torch.Generator().manual_seed(3))
    route = build_route("merge(merge_ratio=0.5)")
    plan = match(x[0].float(), partition(LAYOUT, route.options), route.options)
    fast = restore_tokens(softmax_attention(*(reduce_tokens(t, plan) for t in (q, k, v))), plan)
    slow = route.reference(q, k, v, AttentionContext(LAYOUT, x=x.double()))
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_skip_has_no_reference_and_every_route_answers_the_cost_model():
    q, k, v = qkv()
    with pytest.raises(NotImplementedError):
        build_route("skip").reference(q, k, v, AttentionContext(LAYOUT))
    for spec in ("global", "frame", "mean", "skip", "sga", "merge", "block_sparse"):
        cost = build_route(spec).cost(LAYOUT, 64)
        assert cost.route == str(build_route(spec)) and cost.total >= 0
