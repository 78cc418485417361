"""7-Scenes: depth registered to the colour camera, next to each raw depth map."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from avggt_bench.data.readers import read_png_u16

SEVEN_SCENES_M = np.array(
    [
        [9.9996518012567637e-01, 2.6765126468950343e-03, -7.9041012313000904e-03, -2.5558943178152542e-02],  # noqa: E501
        [-2.7409311281316700e-03, 9.9996302803027592e-01, -8.1504520778013286e-03, 1.0109636268061706e-04],  # noqa: E501
        [7.8819942130445332e-03, 8.1718328771890631e-03, 9.9993554558014031e-01, 2.0318321729487039e-03],  # noqa: E501
        [0.0, 0.0, 0.0, 1.0],
    ]
)  # fmt: skip
"""Fixed depth → colour transform of the 7-Scenes Kinect (`d_to_rgb` of SimpleRecon's
`data_scripts/7scenes_preprocessing.py`)."""


def register_7scenes_depth(
    raw: np.ndarray,
    transform: np.ndarray = SEVEN_SCENES_M,
    sentinel: str = "exclude",
    depth_k: tuple[float, float, float] = (585.0, 320.0, 240.0),
    colour_k: tuple[float, float, float] = (525.0, 320.0, 240.0),
) -> np.ndarray:
    """Raw depth-camera PNG (uint16 mm) → registered colour-camera PNG values (uint16 mm).

    As SimpleRecon's `data_scripts/7scenes_preprocessing.py` `process_frames`: back-project pixel
    centres with the depth intrinsics, move by `transform`, project with the colour intrinsics,
    round half to even, keep the minimum Z per target, store `uint16(1000·Z)` truncated.
    `sentinel="keep"` is that script (raw 65535 enters as 65.535 m; the cast wraps values
    ≥ 65.536 m to a few cm); `"exclude"` drops raw 65535 and never casts ≥ 65.535 m.
    """
    h, w = raw.shape
    d = raw.astype(np.float64) / 1000.0
    ok = (d > 0) & (d < 100)
    if sentinel == "exclude":
        ok &= raw != 65535
    elif sentinel != "keep":
        raise ValueError(f"sentinel must be 'exclude' or 'keep', got {sentinel!r}")
    i, j = np.nonzero(ok)
    z = d[i, j]
    f, cx, cy = depth_k
    pts = np.stack(((j + 0.5 - cx) * z / f, (i + 0.5 - cy) * z / f, z), axis=0)
    cam = transform[:3, :3] @ pts + transform[:3, 3:4]
    fc, ccx, ccy = colour_k
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.round(fc * cam[0] / cam[2] + ccx)
        v = np.round(fc * cam[1] / cam[2] + ccy)
    inside = (cam[2] > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, zc = u[inside].astype(np.int64), v[inside].astype(np.int64), cam[2][inside]
    best = np.full(h * w, np.inf)
    np.minimum.at(best, v * w + u, zc)
    best = best.reshape(h, w)
    hit = np.isfinite(best)
    mm = np.floor(1000.0 * np.where(hit, best, 0.0))
    if sentinel == "exclude":
        hit &= mm < 65535
        return np.where(hit, mm, 0).astype(np.uint16)
    return (mm.astype(np.int64) % 65536).astype(np.uint16)


def prepare_7scenes(root: Path, sentinel: str, overwrite: bool) -> int:
    """Write the registered depth next to each raw `frame-XXXXXX.depth.png`: `keep` (upstream,
    `.depth.proj.png`), `exclude` (`.depth.proj.clean.png`) or `both`; returns the files written."""
    from avggt_bench.data.seven_scenes import DEPTH_SUFFIXES

    modes = ("keep", "exclude") if sentinel == "both" else (sentinel,)
    count = 0
    for raw_path in sorted(root.glob("*/seq-*/frame-*.depth.png")):
        raw = None
        for mode in modes:
            out = raw_path.with_name(raw_path.name.replace("depth.png", DEPTH_SUFFIXES[mode]))
            if out.exists() and not overwrite:
                continue
            raw = read_png_u16(raw_path) if raw is None else raw
            Image.fromarray(register_7scenes_depth(raw, sentinel=mode)).save(out)
            count += 1
    return count
