"""Import π³'s random CO3Dv2 / RealEstate10K frame maps into datasets/lists/ and validate them.

    python datasets/import_frame_lists.py --co3d <pi3 files>/co3d_seq_id_map.json \
        --re10k <pi3 files>/re10k_seq_id_map.json

A thin wrapper over `python -m avggt_bench.data.prepare frame-lists ...` (same options; `--help`
lists them). Reads only what you downloaded, never downloads. See datasets/README.md,
section 'Scene and frame lists'.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without install

from avggt_bench.data.prepare import main

if __name__ == "__main__":
    sys.exit(main(["frame-lists", *sys.argv[1:]]))
