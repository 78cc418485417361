"""File readers shared by the dataset loaders: depth encodings, pose text, PLY vertices, Sintel.

Every reader raises `DataError` naming the file and what is wrong with it, so that the loader
can drop the frame with a reason (`corrupt_depth`, `missing_file`, ...) instead of crashing.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from avggt_bench.errors import DataError

__all__ = [
    "SINTEL_TAG",
    "clean_depth",
    "read_matrix_text",
    "read_npy",
    "read_ply_vertices",
    "read_png_u16",
    "read_raw_float32",
    "read_sintel_cam",
    "read_sintel_dpt",
]

SINTEL_TAG = 202021.25
"""First float32 of Sintel's .cam and .dpt files."""

_FIX = "re-extract the dataset or drop the frame"


def read_png_u16(path: str | os.PathLike[str]) -> np.ndarray:
    """A single-channel 16-bit PNG as uint16 `[H, W]`, raw values (no scaling)."""
    p = Path(path)
    try:
        with Image.open(p) as img:
            img.load()
            if img.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise DataError(f"{p} is a {img.mode} image, not a 16-bit depth PNG")
            arr = np.array(img)
    except FileNotFoundError:
        raise DataError(f"depth file not found: {p}") from None
    except DataError:
        raise
    except Exception as exc:
        raise DataError(
            f"cannot decode depth PNG {p} ({type(exc).__name__}: {exc}); {_FIX}"
        ) from exc
    if arr.dtype != np.uint16:
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
            raise DataError(f"{p}: values outside the uint16 range; not a 16-bit depth PNG")
        arr = arr.astype(np.uint16)
    return arr


def read_matrix_text(path: str | os.PathLike[str], rows: int, cols: int) -> np.ndarray:
    """A whitespace-separated float matrix (e.g. a 4×4 pose); 'nan' / '-inf' parse as such."""
    p = Path(path)
    try:
        values = [float(v) for v in p.read_text().split()]
    except FileNotFoundError:
        raise DataError(f"file not found: {p}") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot parse {p} as a {rows}x{cols} matrix ({exc}); {_FIX}") from exc
    if len(values) != rows * cols:
        raise DataError(f"{p} holds {len(values)} numbers, expected {rows}x{cols}; {_FIX}")
    return np.array(values, dtype=np.float64).reshape(rows, cols)


def read_raw_float32(path: str | os.PathLike[str], hw: tuple[int, int]) -> np.ndarray:
    """Raw little-endian float32 row-major `[H, W]` (ETH3D depth); the size must match exactly."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"depth file not found: {p}") from None
    expect = hw[0] * hw[1] * 4
    if len(data) != expect:
        raise DataError(
            f"{p} has {len(data)} bytes; a {hw[1]}x{hw[0]} float32 depth map needs {expect} "
            f"(size_mismatch); {_FIX}"
        )
    return np.frombuffer(data, dtype="<f4").reshape(hw).astype(np.float32)


def read_npy(path: str | os.PathLike[str]) -> np.ndarray:
    p = Path(path)
    try:
        return np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"file not found: {p}") from None
    except Exception as exc:
        raise DataError(f"cannot read {p} ({type(exc).__name__}: {exc}); {_FIX}") from exc


def clean_depth(
    depth: np.ndarray, min_depth: float | None = None, max_depth: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(depth float32 with invalid → 0, valid mask): NaN, ±inf, ≤ 0 and the cuts are invalid.

    `min_depth`: values strictly below are invalid; `max_depth`: values strictly above are.
    """
    d = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(d) & (d > 0)
    if min_depth is not None:
        valid &= d >= min_depth
    if max_depth is not None:
        valid &= d <= max_depth
    return np.where(valid, d, np.float32(0)).astype(np.float32), valid


def read_sintel_cam(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sintel `.cam`: float32 tag, 9 float64 (K row-major), 12 float64 (w2c 3×4 row-major)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"camera file not found: {p}") from None
    if len(data) < 4 + 21 * 8:
        raise DataError(f"{p} is {len(data)} bytes, too short for a Sintel .cam file; {_FIX}")
    (tag,) = struct.unpack("<f", data[:4])
    if tag != np.float32(SINTEL_TAG):
        raise DataError(f"{p}: tag {tag} is not the Sintel tag {SINTEL_TAG} (wrong file?)")
    vals = np.frombuffer(data, dtype="<f8", count=21, offset=4)
    return vals[:9].reshape(3, 3).copy(), vals[9:].reshape(3, 4).copy()


def read_sintel_dpt(path: str | os.PathLike[str]) -> np.ndarray:
    """Sintel `.dpt`: float32 tag, int32 width, int32 height, W·H float32 z-depth (row-major)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"depth file not found: {p}") from None
    if len(data) < 12:
        raise DataError(f"{p} is too short for a Sintel .dpt file; {_FIX}")
    tag, w, h = struct.unpack("<fii", data[:12])
    if tag != np.float32(SINTEL_TAG):
        raise DataError(f"{p}: tag {tag} is not the Sintel tag {SINTEL_TAG} (wrong file?)")
    if w <= 0 or h <= 0 or len(data) != 12 + 4 * w * h:
        raise DataError(f"{p}: header says {w}x{h} but the file has {len(data) - 12} data bytes")
    return np.frombuffer(data, dtype="<f4", offset=12).reshape(h, w).astype(np.float32)


_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip


def read_ply_vertices(path: str | os.PathLike[str]) -> np.ndarray:
    """Vertex positions `[N, 3]` float64 of a PLY file (ascii or binary, scalar vertex props)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"PLY file not found: {p}") from None
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise DataError(f"{p} is not a PLY file (no 'ply' magic / end_header); {_FIX}")
    body = raw[raw.index(b"\n", end) + 1 :]
    fmt, n_vertex, props, current = None, None, [], None
    for line in raw[:end].decode("ascii", "replace").splitlines():
        tok = line.split()
        if not tok:
            continue
        if tok[0] == "format":
            fmt = tok[1]
        elif tok[0] == "element":
            current = tok[1]
            if current == "vertex":
                n_vertex = int(tok[2])
            elif n_vertex is None:
                raise DataError(f"{p}: element {tok[1]!r} precedes the vertices; unsupported")
        elif tok[0] == "property" and current == "vertex":
            if tok[1] == "list":
                raise DataError(f"{p}: list properties on vertices are not supported")
            props.append((tok[2], _PLY_TYPES[tok[1]]))
    names = [n for n, _ in props]
    if n_vertex is None or not {"x", "y", "z"} <= set(names):
        raise DataError(f"{p}: no vertex element with x, y, z properties")
    if fmt == "ascii":
        rows = body.decode("ascii").split("\n")[:n_vertex]
        table = np.array([r.split()[: len(props)] for r in rows], dtype=np.float64)
        return table[:, [names.index(a) for a in "xyz"]]
    endian = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt or "")
    if endian is None:
        raise DataError(f"{p}: unknown PLY format {fmt!r}")
    dtype = np.dtype([(n, endian + t) for n, t in props])
    if len(body) < dtype.itemsize * n_vertex:
        raise DataError(f"{p} is truncated ({n_vertex} vertices declared); {_FIX}")
    table = np.frombuffer(body, dtype=dtype, count=n_vertex)
    return np.stack([table[a].astype(np.float64) for a in "xyz"], axis=1)
