"""Protocol presets: every config composes without data, the synthetic presets run end to
end, frame selection is reproducible across runs and processes, bad scenes are skipped and
counted, and every README section an error message names exists."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from avggt_bench.data import (
    Scene,
    SkippedScene,
    build_dataset,
    load_protocol_preset,
    plan_protocol,
    preset_names,
    protocol_scenes,
    summarize,
)
from avggt_bench.data.datasets import LOADERS, loader_class
from avggt_bench.data.presets import LISTS_DIR, TASKS, Preset
from avggt_bench.data.protocol_scenes import ProtocolDataset
from avggt_bench.errors import ConfigError
from avggt_bench.paths import REPO_DIR

SMALL = ["dataset.width=32", "dataset.height=24", "dataset.num_objects=2"]
REQUIRED = [
    "co3d_vggt", "co3d_pi3", "re10k_pi3", "seven_scenes_pi3_sparse", "seven_scenes_pi3_dense",
    "seven_scenes_dense_800", "nrgbd_pi3_sparse", "nrgbd_pi3_dense", "dtu_pi3", "eth3d_pi3",
    "tum_dynamics_cut3r", "scannet_fastvggt_1000", "scannet_cut3r", "sintel_cut3r",
    "synthetic_sparse", "synthetic_dense",
]  # fmt: skip
IMPORTED = {  # user-supplied, not redistributed
    "pi3_co3d_seq_id_map.json",
    "pi3_re10k_seq_id_map.json",
    "re10k_posediffusion_test.txt",
}


def test_every_preset_composes_and_validates_without_data():
    names = preset_names()
    assert set(REQUIRED) <= set(names)
    protocol = [n for n in names if n not in ("synthetic", "folder")]
    for name in protocol:
        preset = load_protocol_preset(name)
        assert preset.name == name and preset.task in TASKS, name
        spec = preset.as_dict()
        assert set(spec["compat"]) >= {"k_rescale", "pair_order", "traj_input"}
        for path in preset.list_files():  # shipped lists exist; π³'s random maps are imported
            assert path.is_file() or path.name in IMPORTED, (name, path)
    assert load_protocol_preset("dtu_pi3").report_unit == "mm"
    assert load_protocol_preset("eth3d_pi3").compat["colmap_half_pixel"] == "ignore"
    assert load_protocol_preset("co3d_vggt").sampling.strategy == "random_choice_legacy"
    with pytest.raises(ConfigError, match="Did you mean 'frame_order'"):
        load_protocol_preset("seven_scenes_pi3_dense", ["+dataset.frame_ordr=ascending"])
    with pytest.raises(ConfigError, match="Did you mean 'seven_scenes_pi3_dense'"):
        load_protocol_preset("seven_scenes_pi3_dens")


def test_plain_configs_still_build_loaders():
    """`dataset=synthetic` and `dataset=folder` stay plain loaders with `load_views(n)`."""
    ds = build_dataset({"name": "synthetic", "dataset": "synthetic", "width": 32, "height": 24})
    scene = ds.load_views(3)
    assert scene.num_views == 3 and scene.extrinsics.dtype.is_floating_point
    assert not isinstance(ds, ProtocolDataset)
    cfg = OmegaConf.load(REPO_DIR / "conf" / "dataset" / "synthetic_sparse.yaml")
    proto = build_dataset(cfg)
    assert isinstance(proto, ProtocolDataset) and proto.preset.task == "relpose"
    assert proto.preset.metrics == ("rra", "rta", "auc")


def test_synthetic_sparse_and_dense_presets_run_end_to_end():
    sparse = load_protocol_preset("synthetic_sparse", SMALL)
    items = list(protocol_scenes(sparse))
    assert [i.scene_id for i in items] == ["seed0-orbit", "seed1-walk", "seed2-orbit"]
    for scene in items:
        assert isinstance(scene, Scene) and scene.num_views == 10
        assert scene.extrinsics.shape == (10, 3, 4) and scene.intrinsics.shape == (10, 3, 3)
        assert scene.depth is None  # relative pose needs no depth: none is loaded
        assert str(scene.extrinsics.dtype) == "torch.float64"
        assert scene.meta["protocol"]["preset"] == "synthetic_sparse"
    mv_recon = load_protocol_preset("synthetic_mv_recon", [*SMALL, "dataset.scenes=[seed1-walk]"])
    (mv,) = protocol_scenes(mv_recon)
    assert mv.depth.shape == (8, 24, 32) and mv.valid.float().mean() > 0.9  # exact, dense depth
    dense = load_protocol_preset("synthetic_dense", SMALL)
    plan, _, _ = plan_protocol(dense)  # planning renders nothing
    assert [len(p.indices) for p in plan] == [800]
    (scene,) = protocol_scenes(dense, num_views=12)
    assert scene.num_views == 12 and scene.frame_indices == list(range(12))


def test_faults_are_dropped_or_skipped_and_counted():
    """A NaN-pose frame is dropped and recorded; a scene with too few valid frames is
    skipped with its reason; the summary counts both; nothing raises."""
    faults = list(protocol_scenes(load_protocol_preset("synthetic_faults", SMALL)))
    walk, static = faults
    assert walk.dropped == [(3, "nan_pose")] and 3 not in walk.frame_indices
    assert walk.num_views == 7 and np.isfinite(walk.extrinsics.numpy()).all()
    assert static.num_views == 7 and (static.extrinsics == static.extrinsics[0]).all()
    few = load_protocol_preset(
        "synthetic_faults",
        [*SMALL, "dataset.nan_pose_frames=[0,1,2,4,5,6,7]", "dataset.min_frames=2"],
    )
    items = list(protocol_scenes(few))
    assert all(isinstance(i, SkippedScene) and i.reason == "too_few_frames" for i in items)
    counts = summarize([*faults, *items])
    assert counts["evaluated"] == 2 and counts["skipped"] == 2
    assert counts["skipped_by_reason"] == {"too_few_frames": 2}
    assert counts["dropped_frames"]["seed0-walk"] == [(3, "nan_pose")]


def _random_preset(n: int = 4) -> Preset:
    return Preset.from_mapping(
        {
            "name": "random_t",
            "task": "relpose",
            "dataset": "synthetic",
            "frames": 40,
            "width": 32,
            "height": 24,
            "scenes": ["seed0-orbit", "seed1-walk", "seed2-orbit"],
            "sampling": {"strategy": "random_choice_legacy", "n": n, "seed": 0},
            "metrics": ["auc"],
            "thresholds": [30],
        }
    )


def _indices(preset: Preset, num_views: int | None = None) -> list[list[int]]:
    return [p.indices for p in plan_protocol(preset, num_views=num_views)[0]]


CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
from test_data_presets import _indices, _random_preset
print(json.dumps([_indices(_random_preset()), _indices(_random_preset(), 3)]))
"""


def test_frame_selection_is_reproducible_across_runs_and_processes():
    """Same seed ⇒ same lists: twice in this process, in a fresh interpreter with another hash
    seed, and equal to NumPy's legacy RandomState(seed) drawn once per run, scene after scene."""
    first = _indices(_random_preset())
    assert first == _indices(_random_preset())
    rng = np.random.RandomState(0)
    assert first == [rng.permutation(40)[:4].tolist() for _ in range(3)]
    assert len({tuple(i) for i in first}) == 3  # one generator for the run, not one per scene
    override = _indices(_random_preset(), 3)
    rng = np.random.RandomState(0)
    assert override == [rng.choice(40, 3, replace=False).tolist() for _ in range(3)]
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_DIR)}
    code = CHILD.format(tests=str(Path(__file__).parent))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [first, override]
    # stride / even_first overrides are pure functions of the frame count
    dense = load_protocol_preset("seven_scenes_dense_800")
    assert dense.sampler(100).select("a", 1000) == dense.sampler(100).select("a", 1000)


def _headings(text: str) -> set[str]:
    return {m.group(1).strip() for m in re.finditer(r"^#{1,4} (.+)$", text, re.M)}


def test_readme_sections_named_by_errors_exist():
    readme = (REPO_DIR / "datasets" / "README.md").read_text()
    headings = _headings(readme)
    for name in LOADERS:
        section = loader_class(name).section
        assert section in headings, f"{name}: README has no section {section!r}"
    named = set()
    for path in (REPO_DIR / "avggt_bench" / "data").rglob("*.py"):
        named |= set(re.findall(r"section '([^'{]+)'", path.read_text()))
    assert named and named <= headings, named - headings
    for preset in REQUIRED:
        assert f"`{preset}`" in readme, f"README does not mention preset {preset}"
    for list_file in LISTS_DIR.iterdir():
        assert list_file.name in readme, f"README does not describe {list_file.name}"


def test_one_preparation_command_for_every_dataset(tmp_path):
    """`avggt-prepare` (pyproject's console script) is `avggt_bench.data.prepare:main`, and
    `python -m avggt_bench.data.prepare` runs a step in a fresh interpreter; no per-dataset
    wrapper scripts remain in datasets/."""
    import tomllib

    from PIL import Image

    from avggt_bench.data import prepare

    scripts = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["project"]["scripts"]
    module, name = scripts["avggt-prepare"].split(":")
    assert module == "avggt_bench.data.prepare" and getattr(prepare, name) is prepare.main
    assert not list((REPO_DIR / "datasets").glob("*.py"))
    folder = tmp_path / "chess" / "seq-01"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((480, 640), 1500, np.uint16)).save(folder / "frame-000000.depth.png")
    env = {**os.environ, "PYTHONPATH": str(REPO_DIR)}
    cmd = [sys.executable, "-m", "avggt_bench.data.prepare", "7scenes", "--root", str(tmp_path)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "wrote 2 registered depth maps" in out.stdout
    assert (folder / "frame-000000.depth.proj.png").is_file()
    assert (folder / "frame-000000.depth.proj.clean.png").is_file()
