"""CO3Dv2: build the pose-evaluation annotations `<category>_{train,test}.jgz`.

    python datasets/prepare_co3d.py --root /data/co3d [--out /data/co3d/annotations] \
        [--categories apple ...]

A thin wrapper over `python -m avggt_bench.data.prepare co3d ...` (same options; `--help`
lists them). Reads only what you downloaded, never downloads. See datasets/README.md,
section 'CO3Dv2'.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install

from avggt_bench.data.prepare import main

if __name__ == "__main__":
    sys.exit(main(["co3d", *sys.argv[1:]]))
