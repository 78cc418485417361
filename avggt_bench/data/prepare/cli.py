"""The `avggt-prepare <step> ...` command (also `python -m avggt_bench.data.prepare`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from avggt_bench.data.prepare.co3d import build_co3d_annotations
from avggt_bench.data.prepare.eth3d import prepare_eth3d
from avggt_bench.data.prepare.lists import import_frame_lists, write_stride_lists
from avggt_bench.data.prepare.scannet import prepare_scannet
from avggt_bench.data.prepare.seven_scenes import prepare_7scenes
from avggt_bench.data.prepare.tum import prepare_tum
from avggt_bench.errors import AvggtError, DataError

STEPS = """Deterministic preparation steps: `avggt-prepare <step> ...`
(or `python -m avggt_bench.data.prepare <step> ...`).

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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m avggt_bench.data.prepare", description=STEPS,
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
