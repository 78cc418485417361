"""Deterministic dataset preparation, one module per dataset (`co3d`, `seven_scenes`, `eth3d`,
`tum`, `scannet`) plus the shipped scene and frame lists (`lists`), behind one command:
`avggt-prepare <step> ...` or `python -m avggt_bench.data.prepare <step> ...` (`cli`).

Never downloads: every step reads folders the user has obtained and writes next to them
(datasets/README.md describes each dataset's layout and its step).
"""

from avggt_bench.data.prepare.cli import main

__all__ = ["main"]
