"""ETH3D: undistort the DSLR images and depth and write the per-image cameras.

    python datasets/prepare_eth3d.py --root /data/eth3d [--mode pi3|exact] [--scenes courtyard ...]

A thin wrapper over `python -m avggt_bench.data.prepare eth3d ...` (same options; `--help`
lists them). Reads only what you downloaded, never downloads. See datasets/README.md,
section 'ETH3D'.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install

from avggt_bench.data.prepare import main

if __name__ == "__main__":
    sys.exit(main(["eth3d", *sys.argv[1:]]))
