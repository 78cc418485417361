"""ETH3D: undistorted images, sparse depth and cameras from the raw THIN_PRISM_FISHEYE DSLR
calibration (`--mode pi3`: π³'s evaluation branch, `--mode exact`: z-buffered splatting)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from avggt_bench.data.colmap import read_cameras, read_images
from avggt_bench.data.readers import read_raw_float32


def fisheye_distort(
    x: np.ndarray, y: np.ndarray, k: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Equidistant fisheye (OpenCV `fisheye` model, k1..k4) of normalised coordinates."""
    r = np.sqrt(x * x + y * y)
    theta = np.arctan(r)
    t2 = theta * theta
    theta_d = theta * (1 + t2 * (k[0] + t2 * (k[1] + t2 * (k[2] + t2 * k[3]))))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(r > 1e-8, theta_d / r, 1.0)
    return x * scale, y * scale


def fisheye_undistort_points(
    xd: np.ndarray, yd: np.ndarray, k: Sequence[float], iterations: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `fisheye_distort` (Newton on θ, as `cv2.fisheye.undistortPoints`)."""
    theta_d = np.sqrt(xd * xd + yd * yd)
    theta = theta_d.copy()
    for _ in range(iterations):
        t2 = theta * theta
        f = theta * (1 + t2 * (k[0] + t2 * (k[1] + t2 * (k[2] + t2 * k[3])))) - theta_d
        df = 1 + t2 * (3 * k[0] + t2 * (5 * k[1] + t2 * (7 * k[2] + 9 * t2 * k[3])))
        theta = theta - f / df
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(theta_d > 1e-8, np.tan(theta) / theta_d, 1.0)
    return xd * scale, yd * scale


def _thin_prism(u: np.ndarray, v: np.ndarray, p: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """COLMAP THIN_PRISM_FISHEYE: normalised camera coords → distorted normalised coords."""
    k1, k2, p1, p2, k3, k4, sx1, sy1 = p[4:12]
    r = np.sqrt(u * u + v * v)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(r > 1e-8, np.arctan(r) / r, 1.0)
    uu, vv = u * f, v * f
    r2 = uu * uu + vv * vv
    radial = r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
    du = uu * radial + 2 * p1 * uu * vv + p2 * (r2 + 2 * uu * uu) + sx1 * r2
    dv = vv * radial + 2 * p2 * uu * vv + p1 * (r2 + 2 * vv * vv) + sy1 * r2
    return uu + du, vv + dv


def _thin_prism_inverse(xd, yd, p, iterations: int = 30):
    """Undistort thin-prism coordinates by fixed-point iteration, then invert the fisheye."""
    k1, k2, p1, p2, k3, k4, sx1, sy1 = p[4:12]
    uu, vv = xd.copy(), yd.copy()
    for _ in range(iterations):
        r2 = uu * uu + vv * vv
        radial = r2 * (k1 + r2 * (k2 + r2 * (k3 + r2 * k4)))
        du = uu * radial + 2 * p1 * uu * vv + p2 * (r2 + 2 * uu * uu) + sx1 * r2
        dv = vv * radial + 2 * p2 * uu * vv + p1 * (r2 + 2 * vv * vv) + sy1 * r2
        uu, vv = xd - du, yd - dv
    theta = np.sqrt(uu * uu + vv * vv)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(theta > 1e-8, np.tan(theta) / theta, 1.0)
    return uu * s, vv * s


def _bilinear(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Bilinear sampling at pixel coordinates (centre of pixel (u, v) at (u, v)); black outside."""
    h, w = img.shape[:2]
    x0, y0 = np.floor(mx).astype(np.int64), np.floor(my).astype(np.int64)
    fx, fy = (mx - x0)[..., None], (my - y0)[..., None]
    out = np.zeros((*mx.shape, img.shape[2]), dtype=np.float64)
    for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                        (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):  # fmt: skip
        xs, ys = x0 + dx, y0 + dy
        ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        vals = np.zeros_like(out)
        vals[ok] = img[ys[ok], xs[ok]]
        out += wgt * vals
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def splat_depth(
    depth: np.ndarray, target: tuple[np.ndarray, np.ndarray], zbuffer: bool
) -> np.ndarray:
    """Forward-splat depth to rounded target pixels; last write in row-major order wins, or the
    nearest depth with `zbuffer`. Untouched pixels are 0."""
    h, w = depth.shape
    u, v = target
    ok = np.isfinite(depth) & (depth > 0)
    ui, vi = np.round(u).astype(np.int64), np.round(v).astype(np.int64)
    ok &= (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
    flat = (vi * w + ui)[ok]
    vals = depth[ok]
    out = np.zeros(h * w, dtype=np.float32)
    if zbuffer:
        order = np.argsort(-vals, kind="stable")  # far first, so the nearest is written last
        flat, vals = flat[order], vals[order]
    out[flat] = vals  # NumPy fancy assignment: the last occurrence wins
    return out.reshape(h, w)


def undistort_eth3d_image(
    img: np.ndarray, depth: np.ndarray, params: Sequence[float], mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """One distorted DSLR image and depth → undistorted image, sparse depth; output K = input K."""
    fx, fy, cx, cy = params[:4]
    h, w = depth.shape
    off = 0.0 if mode == "pi3" else 0.5  # exact mode honours COLMAP's half-pixel convention
    out_img = np.zeros_like(img)
    rows = max(1, 4_000_000 // w)
    for r0 in range(0, h, rows):
        v, u = np.mgrid[r0 : min(h, r0 + rows), 0:w].astype(np.float64)
        x, y = (u + off - cx) / fx, (v + off - cy) / fy
        if mode == "pi3":
            xd, yd = fisheye_distort(x, y, (params[4], params[5], params[8], params[9]))
        else:
            xd, yd = _thin_prism(x, y, params)
        out_img[r0 : r0 + rows] = _bilinear(img, fx * xd + cx - off, fy * yd + cy - off)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    xd, yd = (u + off - cx) / fx, (v + off - cy) / fy
    if mode == "pi3":
        x, y = fisheye_undistort_points(xd, yd, (params[4], params[5], params[8], params[9]))
    else:
        x, y = _thin_prism_inverse(xd, yd, params)
    out_depth = splat_depth(depth, (fx * x + cx - off, fy * y + cy - off), zbuffer=mode == "exact")
    return out_img, out_depth


def prepare_eth3d(root: Path, mode: str, scenes: Sequence[str] | None) -> int:
    sub = {"pi3": "custom_undistorted", "exact": "exact_undistorted"}[mode]
    count = 0
    for scene in scenes or sorted(
        p.name for p in root.iterdir() if (p / "dslr_calibration_jpg").is_dir()
    ):
        base = root / scene
        cams = read_cameras(base / "dslr_calibration_jpg" / "cameras.txt")
        for im in read_images(base / "dslr_calibration_jpg" / "images.txt"):
            name = Path(im.name).name
            cam = cams[im.camera_id]
            img = np.asarray(Image.open(base / "images" / "dslr_images" / name).convert("RGB"))
            depth = read_raw_float32(
                base / "ground_truth_depth" / "dslr_images" / name, (cam.height, cam.width)
            )
            if cam.model == "THIN_PRISM_FISHEYE":
                out_img, out_depth = undistort_eth3d_image(img, depth, cam.params, mode)
            else:  # a pinhole calibration (the undistorted archive): nothing to undistort
                out_img, out_depth = img, np.where(np.isfinite(depth) & (depth > 0), depth, 0)
            for folder in (
                base / "images" / sub,
                base / "ground_truth_depth" / sub,
                base / f"{sub}_cam",
            ):
                folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(out_img).save(base / "images" / sub / name, format="JPEG", quality=95)
            (base / "ground_truth_depth" / sub / name).write_bytes(
                out_depth.astype("<f4").tobytes()
            )
            fx, fy, cx, cy = cam.focal_principal
            k = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
            ext = np.eye(4)
            ext[:3] = im.w2c
            np.savez(base / f"{sub}_cam" / f"{Path(name).stem}.npz", intrinsics=k, extrinsics=ext)
            count += 1
    return count
