"""ScanNet: write the 90-frame subsets `color_90/`, `depth_90/`, `pose_90.txt` (optional).

    python datasets/prepare_scannet.py --root /data/scannet

A thin wrapper over `python -m avggt_bench.data.prepare scannet ...` (same options; `--help`
lists them). Reads only what you downloaded, never downloads. See datasets/README.md,
section 'ScanNet v2'.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install

from avggt_bench.data.prepare import main

if __name__ == "__main__":
    sys.exit(main(["scannet", *sys.argv[1:]]))
