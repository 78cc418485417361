"""GPU kernel paths rehearsed on CPU: FlexAttention block-sparse against the gathered kernel on the
same selection, and the log-sum-exp backends of SGA (every CPU backend against a float64
reference; the CUDA choices through the pure chooser)."""

from __future__ import annotations

import pytest
import torch

from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.lse import (
    BACKENDS,
    CUDA_ONLY,
    BackendEnv,
    attn_lse,
    choose_backend,
    select_backend,
)
from avggt_bench.attention.methods import block_sparse as bs
from avggt_bench.attention.routes import softmax_attention
from avggt_bench.errors import ConfigError

# --- block-sparse: FlexAttention vs the gathered kernel ----------------------------------------


def selection(pad=False, dtype=torch.float32, full_size=False):
    """Random q/k/v and block selection (rho 0.8, tau 0.4) of a layout whose patch tokens are no
    multiple of the blocks: 3 frames of 6x7 patches with blocks (32, 16), or with `full_size` the
    presets' blocks (128, 64) on 4 frames of 12x13 patches and head dim 64 (CUDA kernels)."""
    frames, grid, blocks, dim = (
        (4, (12, 13), (128, 64), 64) if full_size else (3, (6, 7), (32, 16), 16)
    )
    layout = TokenLayout(frames=frames, grid=grid, num_special=5)
    opts = bs.BlockSparseOptions(
        rho=0.8, tau=0.4, q_block=blocks[0], k_block=blocks[1], pad_patch_keys=pad
    )
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, layout.num_tokens, dim, generator=gen, dtype=dtype) for _ in "qkv")
    geo = bs.geometry(layout, opts, "cpu")
    qp, kp, vp = (x[:, :, geo.patch_idx] for x in (q, k, v))
    mask = bs.block_mask(qp, kp, geo, opts)
    keys = bs._key_sequence(kp, k[:, :, geo.special_idx], geo)
    values = bs._key_sequence(vp, v[:, :, geo.special_idx], geo)
    return qp, keys, values, mask, geo, opts


@pytest.mark.parametrize("pad", [False, True])
def test_flex_block_mask_is_the_selection_at_token_level(pad):
    """What FlexAttention is given (block lists + padding mask_mod) allows exactly the keys the
    masked-dense kernel allows; no compile needed."""
    *_, mask, geo, opts = selection(pad=pad)
    assert 0.2 < mask.float().mean() < 0.9  # a real selection, neither empty nor dense
    block = bs.flex_block_mask(mask, geo, opts)
    assert torch.equal(block.to_dense().bool(), mask)
    q_idx = torch.arange(geo.t_p)[:, None]
    kv_idx = torch.arange(geo.key_len)[None]
    by_block = mask[:, :, q_idx // opts.q_block, kv_idx // opts.k_block]
    flex_allowed = by_block & block.mask_mod(0, 0, q_idx, kv_idx)
    rows, cols = torch.arange(geo.t_p) // opts.q_block, torch.arange(geo.key_len) // opts.k_block
    dense_allowed = mask[:, :, rows][..., cols] & bs._key_valid(geo, "cpu")
    assert torch.equal(flex_allowed, dense_allowed)
    assert pad == bool((~bs._key_valid(geo, "cpu")).any())  # padding keys exist only when padded


@pytest.mark.slow  # torch.compile of FlexAttention for CPU takes ~40 s on a busy 2-core machine
def test_compiled_flex_attention_equals_the_gathered_kernel_on_cpu():
    qp, keys, values, mask, geo, opts = selection()
    try:
        flex = bs.flex_attention_blocks(qp, keys, values, mask, geo, opts)
    except Exception as exc:  # no C++ toolchain for inductor, or an unsupported torch
        pytest.skip(f"FlexAttention does not compile for CPU here: {type(exc).__name__}: {exc}")
    gathered = bs.gather_attention(qp, keys, values, mask, geo, opts)
    dense = bs.gather_attention(qp, keys, values, torch.ones_like(mask), geo, opts)
    torch.testing.assert_close(flex, gathered, rtol=1e-5, atol=1e-5)
    assert (flex - dense).abs().max() > 1e-2  # the selection matters (eager flex would be dense)


@pytest.mark.gpu
def test_flex_attention_on_cuda_equals_the_float64_masked_reference():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    qp, keys, values, mask, geo, opts = selection(full_size=True)
    ref = bs.masked_dense_attention(*(t.double() for t in (qp, keys, values)), mask, geo, opts)
    cuda = [t.cuda() for t in (qp, keys, values, mask)]
    out = bs.flex_attention_blocks(*cuda[:3], cuda[3], geo, opts).cpu().double()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


# --- SGA log-sum-exp backends -------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend, dtype, tol",
    [
        ("cpu_flash", torch.float32, 1e-5),
        ("cpu_flash", torch.float64, 1e-10),
        ("cpu_flash", torch.bfloat16, 3e-2),
        ("math", torch.float32, 1e-5),
        ("math", torch.float64, 1e-10),
        ("math", torch.float16, 3e-3),
    ],
)
def test_every_cpu_backend_against_the_float64_reference(backend, dtype, tol):
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(1, 2, 45, 32, generator=gen, dtype=torch.float64)
    k, v = (torch.randn(1, 2, 37, 32, generator=gen, dtype=torch.float64) for _ in "kv")
    out, lse, used = attn_lse(*(t.to(dtype) for t in (q, k, v)), backend)
    assert used == backend
    assert lse.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    ref_lse = torch.logsumexp(q @ k.transpose(-1, -2) / 32**0.5, dim=-1)
    torch.testing.assert_close(lse.double(), ref_lse, rtol=tol, atol=tol)
    torch.testing.assert_close(out.double(), softmax_attention(q, k, v), rtol=tol, atol=tol)


def env(device="cuda", dtype=torch.bfloat16, head_dim=64, flash=True, fa=False):
    return BackendEnv(device, dtype, head_dim, flash, fa)


@pytest.mark.parametrize(
    "environment, expected",
    [
        (env(), "sdpa_flash"),  # H100/H200 bf16, VGGT's head dim 64
        (env(dtype=torch.float16), "sdpa_flash"),
        (env(flash=False), "sdpa_efficient"),  # pre-Ampere GPU: no flash kernels
        (env(dtype=torch.float32), "sdpa_efficient"),
        (env(head_dim=288), "sdpa_efficient"),  # past flash's head-dim limit
        (env(head_dim=60), "math"),  # not a multiple of 8: no fused kernel
        (env(dtype=torch.float64), "math"),
        (env("cpu", torch.float32), "cpu_flash"),
        (env("cpu", torch.bfloat16), "cpu_flash"),
        (env("cpu", torch.float16), "math"),
        (env("mps", torch.float32), "math"),
    ],
)
def test_auto_chooser_for_each_environment(environment, expected):
    assert select_backend("auto", environment) == expected


def test_explicit_kernels_are_checked_against_the_environment():
    assert select_backend("sdpa_efficient", env(dtype=torch.float32)) == "sdpa_efficient"
    assert select_backend("flash_attn", env(fa=True)) == "flash_attn"
    with pytest.raises(ConfigError, match="flash_attn package"):
        select_backend("flash_attn", env(fa=False))
    for name in CUDA_ONLY:
        with pytest.raises(ConfigError, match="CUDA only"):
            select_backend(name, env("cpu", torch.float32))
    with pytest.raises(ConfigError, match="valid: auto"):
        select_backend("xformers", env())
    # config validation (before the device is known) checks the name only
    assert choose_backend("sdpa_flash", torch.device("cpu"), torch.float32) == "sdpa_flash"
    assert choose_backend("auto", torch.device("cpu"), torch.float32) == "cpu_flash"
    with pytest.raises(ConfigError, match="CUDA only"):  # running it on CPU is a clear error
        attn_lse(*(torch.randn(1, 1, 4, 8) for _ in "qkv"), "sdpa_flash")
    assert set(CUDA_ONLY) < set(BACKENDS)
