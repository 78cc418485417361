"""7-Scenes: register the raw depth to the colour camera (`frame-XXXXXX.depth.proj.png`).

    python datasets/prepare_7scenes.py --root /data/7scenes [--sentinel exclude|keep] [--overwrite]

A thin wrapper over `python -m avggt_bench.data.prepare 7scenes ...` (same options; `--help`
lists them). Reads only what you downloaded, never downloads. See datasets/README.md,
section '7-Scenes'.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install

from avggt_bench.data.prepare import main

if __name__ == "__main__":
    sys.exit(main(["7scenes", *sys.argv[1:]]))
