"""TUM RGB-D: write the 90-frame subsets `rgb_90/` and `groundtruth_90.txt` (optional).

    python datasets/prepare_tum.py --root /data/tum

A thin wrapper over `python -m avggt_bench.data.prepare tum ...` (same options; `--help`
lists them). Reads only what you downloaded, never downloads. See datasets/README.md,
section 'TUM RGB-D (dynamic objects)'.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install

from avggt_bench.data.prepare import main

if __name__ == "__main__":
    sys.exit(main(["tum", *sys.argv[1:]]))
