"""Correctness checks of the GPU path, run by scripts/gpu_check.py before any timing.

Each check returns a row `{"check", "status" (ok|fail|skipped|error), "detail", "max_rel_err"}`:

- `official_vector`: VGGT-1B / π³ with the test-vector recipe weights against the official outputs
  in tests/data (fp32, TF32 off; CUDA kernels reorder sums, so 1e-4 of the range is the bound where
  the CPU tests use 1e-5);
- `sga[<kernel>,<dtype>]`: the SGA mixer on each log-sum-exp backend of the device against the
  float64 reference (`sga_reference` in avggt_bench/attention/methods/avggt.py);
- `block_sparse[<kernel>]`: the block-sparse executors against the float64 masked-dense reference on
  the same selection (FlexAttention on CUDA, under torch.compile).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from avggt_bench.attention.base import AttentionContext
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.lse import BACKENDS, backend_env, select_backend
from avggt_bench.attention.methods import block_sparse as bs
from avggt_bench.attention.methods.avggt import sga_reference
from avggt_bench.attention.sga import SGAMixer, SGAOptions
from avggt_bench.errors import ConfigError
from avggt_bench.testing.weights import fill_recipe_weights

Row = dict[str, Any]
VECTOR_TOL = 1e-4
PI3_OUTPUTS = ("local_points", "camera_poses", "points")


def _rel(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.detach().double().cpu(), ref.detach().double().cpu()
    return float((ours - ref).abs().max() / ref.abs().max().clamp(min=1e-30))


def _recipe_model(family: str, small: bool, scale: float) -> torch.nn.Module:
    """The official architecture with the test-vector recipe weights (tests/data/README.md)."""
    if family == "vggt":
        from avggt_bench.models.vggt.model import VGGT, VGGT_1B, VGGT_SMALL

        with torch.device("meta"):
            model = VGGT(VGGT_SMALL if small else VGGT_1B)
        model = model.to_empty(device="cpu")
    else:
        from avggt_bench.models.pi3.model import PI3, PI3_SMALL, Pi3

        with torch.device("meta"):
            model = Pi3(PI3_SMALL if small else PI3)
        model = model.to_empty(device="cpu")
        model.init_constants()
    return fill_recipe_weights(model, scale).eval()


def make_vector(family: str, path: Path, scale: float) -> torch.nn.Module:
    """A test vector in the official format from the small architecture on CPU (dry runs);
    returns the model that made it."""
    model = _recipe_model(family, small=True, scale=scale)
    inputs = torch.rand(1, 2, 3, 28, 42, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        pred = model(inputs)
    names = ("pose_enc", "depth", "world_points") if family == "vggt" else PI3_OUTPUTS
    outputs = {n: pred[n] for n in names}
    torch.save({"inputs": inputs, "outputs": outputs}, path)
    return model


def official_vector(
    family: str,
    path: Path,
    scale: float,
    device: torch.device,
    small: bool = False,
    model: torch.nn.Module | None = None,
) -> Row:
    """Our model on `device` in fp32 against an official test vector (`model`: already built)."""
    name = f"official_vector[{family}{'_small' if small else ''},{device.type}]"
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        vector = torch.load(path)
        model = (model or _recipe_model(family, small, scale)).to(device)
        with torch.inference_mode():
            pred = model(vector["inputs"].to(device))
        errs = {}
        for key, ref in vector["outputs"].items():
            errs[key] = _rel(pred[key], ref)
        del model
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    worst = max(errs.values())
    detail = ", ".join(f"{k} {v:.1e}" for k, v in errs.items())
    return _row(name, worst <= VECTOR_TOL, f"{detail} (bound {VECTOR_TOL:g})", worst)


def _row(check: str, passed: bool, detail: str, err: float | None) -> Row:
    return {
        "check": check,
        "status": "ok" if passed else "fail",
        "detail": detail,
        "max_rel_err": err,
    }


def _qkv(layout: TokenLayout, device, dtype, head_dim=64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shape = (1, 2, layout.num_tokens, head_dim)
    return [torch.randn(shape, generator=gen, dtype=torch.float64) for _ in range(3)]


HALF = (torch.bfloat16, torch.float16)
# the dtypes each backend's kernel takes (PyTorch's flash kernels and flash_attn: half only)
SUPPORTED = {
    "cpu_flash": (torch.float32, torch.bfloat16),
    "sdpa_flash": HALF,
    "flash_attn": HALF,
    "sdpa_efficient": (torch.float32, *HALF),
    "math": (torch.float32, *HALF),
}
SGA_DTYPE_TOL = {
    torch.float64: 1e-9,
    torch.float32: 1e-4,
    torch.float16: 5e-3,
    torch.bfloat16: 3e-2,
}


def sga_backends(device: torch.device) -> list[Row]:
    """The SGA mixer on every log-sum-exp backend this device runs, against the float64 reference
    (sigma 4, 3 frames of 5x7 patches, head dim 64)."""
    layout = TokenLayout(3, (5, 7), 5, reference_frame=True)
    q, k, v = _qkv(layout, device, torch.float64)
    rows = []
    for kernel in BACKENDS:
        for dtype in SUPPORTED.get(kernel, (torch.float32,)):
            env = backend_env(device, dtype, q.shape[-1])
            try:
                select_backend(kernel, env)
            except ConfigError:
                continue  # not a backend of this device (or its package is not installed)
            opts = SGAOptions(sigma=4, keep_first_frame=True, kernel=kernel)
            ref = sga_reference(q, k, v, layout, opts)
            name = f"sga[{kernel},{str(dtype).removeprefix('torch.')}]"
            try:
                mixer = SGAMixer(opts)
                args = [t.to(device, dtype) for t in (q, k, v)]
                out = mixer(*args, AttentionContext(layout=layout))
                err = _rel(out, ref)
                tol = SGA_DTYPE_TOL[dtype]
                rows.append(
                    _row(name, err <= tol, f"backend {mixer.last_backend}, bound {tol:g}", err)
                )
            except Exception as exc:  # a kernel that fails on this device is a finding
                rows.append(
                    {
                        "check": name,
                        "status": "error",
                        "detail": repr(exc)[:300],
                        "max_rel_err": None,
                    }
                )
    return rows


def block_sparse_kernels(device: torch.device, compile_flex: bool) -> list[Row]:
    """The block-sparse executors on a real selection against the float64 masked reference, with
    the presets' blocks (128 queries, 64 keys) on 4 frames of 12x13 patches (624 patch tokens: no
    multiple of either block) and head dim 64."""
    layout = TokenLayout(frames=4, grid=(12, 13), num_special=5)
    opts = bs.BlockSparseOptions(rho=0.8, tau=0.4)
    q, k, v = _qkv(layout, device, torch.float64, head_dim=64, seed=2)
    geo = bs.geometry(layout, opts, "cpu")
    qp, kp, vp = (x[:, :, geo.patch_idx] for x in (q, k, v))
    mask = bs.block_mask(qp, kp, geo, opts)
    keys = bs._key_sequence(kp, k[:, :, geo.special_idx], geo)
    values = bs._key_sequence(vp, v[:, :, geo.special_idx], geo)
    ref = bs.masked_dense_attention(qp, keys, values, mask, geo, opts)
    sparsity = 1 - float(mask.float().mean())
    rows = []
    kernels: dict[str, Callable] = {"gather": bs.gather_attention}
    if compile_flex:
        kernels["flex"] = bs.flex_attention_blocks
    for name, fn in kernels.items():
        check = f"block_sparse[{name},{device.type}]"
        geo_dev = bs.geometry(layout, opts, device)
        try:
            start = time.perf_counter()
            args = [t.to(device, torch.float32) for t in (qp, keys, values)]
            out = fn(*args, mask.to(device), geo_dev, opts)
            err = _rel(out, ref)
            detail = f"sparsity {sparsity:.2f}, bound 1e-4, {time.perf_counter() - start:.1f} s"
            rows.append(_row(check, err <= 1e-4, detail, err))
        except Exception as exc:
            rows.append(
                {"check": check, "status": "error", "detail": repr(exc)[:300], "max_rel_err": None}
            )
    if not compile_flex:
        block = bs.flex_block_mask(mask, geo, opts)
        same = bool(torch.equal(block.to_dense().bool(), mask))
        rows.append(
            _row(
                "block_sparse[flex_block_mask]",
                same,
                "BlockMask equals the selection (compiled kernel not run: dry run)",
                None,
            )
        )
    return rows
