"""Deterministic preparation steps: `python -m avggt_bench.data.prepare <step> ...`.

Never downloads: every step reads folders the user has obtained and writes next to them.

    co3d         <category>_<split>.jgz pose-evaluation annotations from the raw CO3Dv2 files
    7scenes      registered depth from the raw depth: frame-XXXXXX.depth.proj.png (SimpleRecon's
                 registration, upstream) and .depth.proj.clean.png (raw 65535 dropped)
    eth3d        undistorted images, sparse depth and cameras (--mode pi3 | exact)
    tum          rgb_90/ and groundtruth_90.txt: association [::3][:90]
    scannet      color_90/, depth_90/, pose_90.txt: first 270 frames at stride 3
(datasets/README.md describes each dataset's layout and these steps.)
    frame-lists  import π³'s random seq-id maps (CO3D, RealEstate10K) and validate them
    lists        regenerate the stride check lists shipped in datasets/lists/
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from avggt_bench.data.colmap import read_cameras, read_images
from avggt_bench.data.readers import read_png_u16, read_raw_float32
from avggt_bench.data.sampling import stride, validate_frame_list
from avggt_bench.errors import AvggtError, DataError

__all__ = [
    "SEVEN_SCENES_M",
    "STRIDE_COUNTS",
    "build_co3d_annotations",
    "fisheye_distort",
    "fisheye_undistort_points",
    "import_frame_lists",
    "main",
    "register_7scenes_depth",
    "splat_depth",
    "write_stride_lists",
]

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

SEVEN_SCENES_TEST = (
    "chess/seq-03", "chess/seq-05", "fire/seq-03", "fire/seq-04", "heads/seq-01", "office/seq-02",
    "office/seq-06", "office/seq-07", "office/seq-09", "pumpkin/seq-01", "pumpkin/seq-07",
    "redkitchen/seq-03", "redkitchen/seq-04", "redkitchen/seq-06", "redkitchen/seq-12",
    "redkitchen/seq-14", "stairs/seq-01", "stairs/seq-04",
)  # fmt: skip

STRIDE_COUNTS: dict[str, tuple[int, dict[str, int]]] = {
    # list file: (stride, frames per scene) of the released sequences (datasets/README.md)
    "seven_scenes_stride200.json": (
        200, {s: 3 if s.startswith("stairs") else 5 for s in SEVEN_SCENES_TEST}
    ),
    "seven_scenes_stride40.json": (
        40, {s: 13 if s.startswith("stairs") else 25 for s in SEVEN_SCENES_TEST}
    ),
    "nrgbd_stride500.json": (500, {
        "breakfast_room": 3, "complete_kitchen": 3, "green_room": 3, "grey_white_room": 3,
        "kitchen": 4, "morning_apartment": 2, "staircase": 3, "thin_geometry": 1, "whiteroom": 4,
    }),
    "nrgbd_stride100.json": (100, {
        "breakfast_room": 12, "complete_kitchen": 13, "green_room": 15, "grey_white_room": 15,
        "kitchen": 16, "morning_apartment": 10, "staircase": 12, "thin_geometry": 4,
        "whiteroom": 17,
    }),
    "dtu_stride5.json": (5, {f"scan{n}": 10 for n in (
        1, 4, 9, 10, 11, 12, 13, 15, 23, 24, 29, 32, 33, 34, 48, 49, 62, 75, 77, 110, 114, 118
    )}),
    "eth3d_stride5.json": (5, {
        "courtyard": 8, "delivery_area": 9, "electro": 9, "facade": 16, "kicker": 7,
        "meadow": 3, "office": 6, "pipes": 3, "playground": 8, "relief": 7, "relief_2": 7,
        "terrace": 5, "terrains": 9,
    }),
}  # fmt: skip
PI3_MAPS = {
    "co3d": ("pi3_co3d_seq_id_map.json", 2506),
    "re10k": ("pi3_re10k_seq_id_map.json", 1719),
}


# --------------------------------------------------------------------------- lists


def write_stride_lists(folder: Path) -> list[Path]:
    """The stride check lists (STRIDE_COUNTS) as `{scene: [0, k, ...]}` JSON files in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (kf, counts) in STRIDE_COUNTS.items():
        lists = {scene: stride(kf * count, kf) for scene, count in counts.items()}
        path = folder / name
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in lists.items())
        path.write_text("{\n" + body + "\n}\n")
        out.append(path)
    return out


def import_frame_lists(sources: dict[str, Path], folder: Path) -> list[Path]:
    """Validate π³'s seq-id maps (`{"co3d": path, "re10k": path}`) and copy them to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for dataset, src in sources.items():
        name, count = PI3_MAPS[dataset]
        try:
            lists = json.loads(Path(src).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read the {dataset} frame list {src}: {exc}") from exc
        if not isinstance(lists, dict):
            raise DataError(f"{src}: expected a JSON object {{sequence: [indices]}}")
        validate_frame_list(
            {str(k): list(v) for k, v in lists.items()},
            expected_sequences=count,
            expected_per_sequence=10,
            where=str(src),
        )
        dst = folder / name
        dst.write_text(json.dumps(lists) + "\n")
        out.append(dst)
    return out


# --------------------------------------------------------------------------- CO3D


def build_co3d_annotations(
    root: Path, out: Path, categories: Sequence[str] | None = None
) -> list[Path]:
    """`<category>_{train,test}.jgz` from set lists and frame annotations.

    Sequences with `viewpoint_quality_score` ≤ 0.5 are left out; the frames of the `fewview_dev`
    set list keep their order (datasets/README.md, section 'CO3Dv2').
    """
    out.mkdir(parents=True, exist_ok=True)
    cats = categories or sorted(p.parent.name for p in root.glob("*/frame_annotations.jgz"))
    if not cats:
        raise DataError(f"no <category>/frame_annotations.jgz under {root}; unpack CO3Dv2 there")
    written = []
    for cat in cats:
        folder = root / cat
        with gzip.open(folder / "frame_annotations.jgz", "rt") as f:
            frames = {(fa["sequence_name"], fa["frame_number"]): fa for fa in json.load(f)}
        with gzip.open(folder / "sequence_annotations.jgz", "rt") as f:
            good = {s["sequence_name"] for s in json.load(f) if s["viewpoint_quality_score"] > 0.5}
        set_lists = json.loads((folder / "set_lists" / "set_lists_fewview_dev.json").read_text())
        for split in ("train", "test"):
            data: dict[str, list[dict[str, Any]]] = {}
            for seq, frame_number, image_path in set_lists.get(split, []):
                if seq not in good:
                    continue
                vp = frames[(seq, frame_number)]["viewpoint"]
                data.setdefault(seq, []).append(
                    {
                        "filepath": image_path,
                        "R": vp["R"],
                        "T": vp["T"],
                        "focal_length": vp["focal_length"],
                        "principal_point": vp["principal_point"],
                    }
                )
            path = out / f"{cat}_{split}.jgz"
            with gzip.open(path, "wt") as f:
                json.dump(data, f)
            written.append(path)
    return written


# --------------------------------------------------------------------------- 7-Scenes


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


# --------------------------------------------------------------------------- ETH3D


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


# --------------------------------------------------------------------------- TUM, ScanNet subsets


def prepare_tum(root: Path, step: int = 3, n: int = 90) -> int:
    from avggt_bench.data.tum import TumLoader

    loader = TumLoader(root)
    for seq in loader.sequences():
        infos = loader.frame_infos(seq, range(loader.num_frames(seq)))[::step][:n]
        out = root / seq / f"rgb_{n}"
        out.mkdir(exist_ok=True)
        lines = []
        matches = loader._matches(seq)
        for info in infos:
            assert info.image_path is not None
            shutil.copy2(info.image_path, out / info.image_path.name)
            lines.append(" ".join([f"{matches[info.index][1]:.6f}", *matches[info.index][3][:7]]))
        (root / seq / f"groundtruth_{n}.txt").write_text("\n".join(lines) + "\n")
    return len(loader.sequences())


def prepare_scannet(root: Path, step: int = 3, n: int = 90) -> int:
    scenes = sorted(p for p in root.iterdir() if (p / "color").is_dir())
    for scene in scenes:
        ids = sorted(int(p.stem) for p in (scene / "color").iterdir() if p.stem.isdigit())
        kept = ids[: n * step][::step]
        for sub in (f"color_{n}", f"depth_{n}"):
            (scene / sub).mkdir(exist_ok=True)
        rows = []
        for k, fid in enumerate(kept):
            shutil.copy2(
                scene / "color" / f"{fid}.jpg", scene / f"color_{n}" / f"frame_{k:04d}.jpg"
            )
            if (scene / "depth" / f"{fid}.png").is_file():
                shutil.copy2(
                    scene / "depth" / f"{fid}.png", scene / f"depth_{n}" / f"frame_{k:04d}.png"
                )
            pose = (scene / "pose" / f"{fid}.txt").read_text().split()
            rows.append(" ".join(pose))
        (scene / f"pose_{n}.txt").write_text("\n".join(rows) + "\n")
    return len(scenes)


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m avggt_bench.data.prepare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="step", required=True)
    c = sub.add_parser("co3d", help="pose-evaluation annotations")
    c.add_argument("--root", type=Path, required=True)
    c.add_argument("--out", type=Path, default=None, help="default: <root>/annotations")
    c.add_argument("--categories", nargs="*", default=None)
    s = sub.add_parser("7scenes", help="registered depth")
    s.add_argument("--root", type=Path, required=True)
    s.add_argument(
        "--sentinel",
        choices=("both", "keep", "exclude"),
        default="both",
        help="keep: SimpleRecon's registration (.depth.proj.png, the upstream protocols' data); "
        "exclude: raw 65535 dropped (.depth.proj.clean.png); both (default)",
    )
    s.add_argument("--overwrite", action="store_true")
    e = sub.add_parser("eth3d", help="undistorted images, depth, cameras")
    e.add_argument("--root", type=Path, required=True)
    e.add_argument("--mode", choices=("pi3", "exact"), default="pi3")
    e.add_argument("--scenes", nargs="*", default=None)
    t = sub.add_parser("tum", help="90-frame subsets")
    t.add_argument("--root", type=Path, required=True)
    n = sub.add_parser("scannet", help="90-frame subsets")
    n.add_argument("--root", type=Path, required=True)
    f = sub.add_parser("frame-lists", help="import π³'s seq-id maps")
    f.add_argument("--co3d", type=Path, default=None)
    f.add_argument("--re10k", type=Path, default=None)
    f.add_argument("--out", type=Path, default=None, help="default: datasets/lists/")
    sub.add_parser("lists", help="regenerate the stride check lists")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from avggt_bench.data.presets import LISTS_DIR

    args = _parser().parse_args(argv)
    try:
        if args.step == "co3d":
            done = build_co3d_annotations(
                args.root, args.out or args.root / "annotations", args.categories
            )
            print(f"wrote {len(done)} annotation files")
        elif args.step == "7scenes":
            print(
                f"wrote {prepare_7scenes(args.root, args.sentinel, args.overwrite)} registered "
                "depth maps"
            )
        elif args.step == "eth3d":
            print(f"undistorted {prepare_eth3d(args.root, args.mode, args.scenes)} images")
        elif args.step == "tum":
            print(f"prepared {prepare_tum(args.root)} sequences")
        elif args.step == "scannet":
            print(f"prepared {prepare_scannet(args.root)} scenes")
        elif args.step == "frame-lists":
            sources = {k: v for k, v in (("co3d", args.co3d), ("re10k", args.re10k)) if v}
            if not sources:
                raise DataError("give --co3d and/or --re10k: π³'s seq-id map JSON files")
            for path in import_frame_lists(sources, args.out or LISTS_DIR):
                print(f"imported {path}")
        elif args.step == "lists":
            for path in write_stride_lists(LISTS_DIR):
                print(f"wrote {path}")
    except (AvggtError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
