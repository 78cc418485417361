"""TUM RGB-D: the 90-frame subsets `rgb_90/` and `groundtruth_90.txt` (association [::3][:90])."""

from __future__ import annotations

import shutil
from pathlib import Path


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
