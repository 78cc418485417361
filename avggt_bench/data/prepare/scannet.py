"""ScanNet: the 90-frame subsets `color_90/`, `depth_90/`, `pose_90.txt` (first 270 frames at
stride 3)."""

from __future__ import annotations

import shutil
from pathlib import Path


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
