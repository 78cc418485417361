"""Frame sampling strategies and the shipped frame lists."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from avggt_bench.data import sampling as sp
from avggt_bench.data.base import FrameError
from avggt_bench.data.prepare.lists import STRIDE_COUNTS, import_frame_lists, write_stride_lists
from avggt_bench.data.presets import LISTS_DIR
from avggt_bench.errors import ConfigError, DataError


def test_stride_counts():
    """Stride selection from frame 0 with the preset's step."""
    assert len(sp.stride(1000, 200)) == 5 and len(sp.stride(500, 200)) == 3
    assert len(sp.stride(1000, 40)) == 25 and len(sp.stride(500, 40)) == 13
    assert sp.stride(49, 5) == list(range(0, 46, 5))


def test_stride_min_half():
    """N = 3 gives stride 1 and 3 frames; a long sequence keeps kf."""
    assert sp.stride_min_half(3, 500) == [0, 1, 2]
    assert sp.stride_min_half(1200, 500) == [0, 500, 1000]
    assert sp.stride_min_half(1, 500) == [0]


def test_even_first():
    """800 of 1000 → frames 0-799; 1000 of 1500 → step 1; invalid frames never appear."""
    assert sp.even_first(list(range(1000)), 800) == list(range(800))
    assert sp.even_first(list(range(1500)), 1000) == list(range(1000))
    valid = [i for i in range(1000) if i % 7]
    out = sp.even_first(valid, 100)
    assert len(out) == 100 and all(i % 7 for i in out) and out[0] == valid[0]
    step = (len(valid) - 1) // 99
    assert out == [valid[0], *valid[1:][::step][:99]]
    assert sp.even_first([3, 4], 10) == [3, 4]


def test_random_choice_legacy_matches_permutation_and_skips_without_draws():
    """First draw = RandomState(seed).permutation(N)[:n]; an excluded sequence in between
    does not change the others' draws."""
    s = sp.build_sampler({"strategy": "random_choice_legacy", "n": 10, "seed": 0})
    first = s.select("a", 120)
    assert first == np.random.RandomState(0).permutation(120)[:10].tolist()
    second = s.select("b", 80)
    again = sp.build_sampler({"strategy": "random_choice_legacy", "n": 10, "seed": 0})
    assert again.select("a", 120) == first
    with pytest.raises(FrameError, match="fewer than the 10") as info:
        again.select("short", 7)  # skipped: consumes no draw
    assert info.value.reason == "too_few_frames"
    assert again.select("b", 80) == second
    # a dedicated generator: the global NumPy state is untouched
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    sp.build_sampler({"strategy": "random_choice_legacy", "n": 3, "seed": 5}).select("x", 10)
    assert np.array_equal(np.random.get_state()[1], before)


def test_fast_eval_subset():
    names = [f"s{i:02d}" for i in range(15)]
    picked = sp.fast_eval_subset(names, random.Random(0), 10)
    assert picked == sorted(random.Random(0).sample(sorted(names), 10))
    assert sp.fast_eval_subset(names[:4], random.Random(0), 10) == names[:4]


def test_first_n_stride():
    """[::3][:90] on 300 matches selects 0, 3, ..., 267."""
    assert sp.first_n_stride(300, 3, 90) == list(range(0, 268, 3))


def test_frame_list_import_validation(tmp_path):
    """Out-of-range and repeated indices and wrong sequence counts are rejected."""
    with pytest.raises(DataError, match="repeats"):
        sp.validate_frame_list({"a": [1, 2, 2]})
    with pytest.raises(DataError, match="out of range"):
        sp.validate_frame_list({"a": [1, 60]}, frames={"a": 50})
    with pytest.raises(DataError, match="2 sequences, expected 3"):
        sp.validate_frame_list({"a": [1], "b": [2]}, expected_sequences=3)
    good = {f"seq{i}": list(range(i, i + 10)) for i in range(1719)}
    src = tmp_path / "re10k.json"
    src.write_text(json.dumps(good))
    [dst] = import_frame_lists({"re10k": src}, tmp_path / "lists")
    assert json.loads(dst.read_text()) == good
    bad = dict(good)
    bad.pop("seq0")
    src.write_text(json.dumps(bad))
    with pytest.raises(DataError, match="1718 sequences, expected 1719"):
        import_frame_lists({"re10k": src}, tmp_path / "lists")


def test_frame_list_strategy_and_override(tmp_path):
    (tmp_path / "map.json").write_text(json.dumps({"x": [5, 1, 9, 3], "y": [0, 2]}))
    s = sp.build_sampler({"strategy": "frame_list", "file": "map.json"}, tmp_path)
    assert s.select("x", 10) == [5, 1, 9, 3]  # listed order is kept
    with pytest.raises(FrameError, match="not in frame list"):
        s.select("z", 10)
    with pytest.raises(DataError, match="out of range"):
        s.select("x", 6)
    assert s.with_count(2).select("x", 10) == [5, 1]
    with pytest.raises(DataError, match="not found"):
        sp.build_sampler({"strategy": "frame_list", "file": "missing.json"}, tmp_path)


def test_num_views_override_is_deterministic():
    base = sp.build_sampler({"strategy": "stride", "kf_every": 40})
    over = base.with_count(100)
    assert over.effective_strategy == "even_first"
    assert over.select("s", 1000) == sp.even_first(list(range(1000)), 100)
    assert over.describe()["num_views_override"] == 100
    rnd = sp.build_sampler({"strategy": "random_choice_legacy", "n": 10, "seed": 0}).with_count(4)
    assert rnd.select("a", 50) == np.random.RandomState(0).permutation(50)[:4].tolist()
    # FastVGGT's rule restarts the stride at the second valid frame: [0] + [1..8][::4][:2]
    assert sp.build_sampler({"strategy": "even_first", "n": 5}).with_count(3).select("a", 9) == [
        0, 1, 5
    ]  # fmt: skip


def test_config_errors_name_the_fix():
    with pytest.raises(ConfigError, match="valid: stride"):
        sp.SamplingConfig.from_mapping({"strategy": "strided"})
    with pytest.raises(ConfigError, match="do not apply to strategy 'stride'"):
        sp.SamplingConfig.from_mapping({"strategy": "stride", "kf_every": 5, "n": 3})
    with pytest.raises(ConfigError, match="kf_every must be a positive integer"):
        sp.SamplingConfig.from_mapping({"strategy": "stride"})
    with pytest.raises(ConfigError, match="file is required"):
        sp.SamplingConfig.from_mapping({"strategy": "frame_list"})


def test_stride_check_file_flags_a_short_sequence(tmp_path):
    (tmp_path / "check.json").write_text(json.dumps({"a": [0, 40, 80]}))
    s = sp.build_sampler(
        {"strategy": "stride", "kf_every": 40, "check_file": "check.json"}, tmp_path
    )
    assert s.select("a", 100) == [0, 40, 80]
    with pytest.raises(FrameError, match="published frame count") as info:
        s.select("a", 80)
    assert info.value.reason == "frame_count_mismatch"
    s.strict = False
    assert s.select("a", 80) == [0, 40] and "a" in s.warnings


def test_shipped_stride_lists_follow_the_rule_and_appendix(tmp_path):
    """The files in datasets/lists/ equal the stride rule with the published per-scene
    frame counts (regenerated)."""
    for path in write_stride_lists(tmp_path):
        shipped = json.loads((LISTS_DIR / path.name).read_text())
        assert shipped == json.loads(path.read_text()), path.name
        kf, counts = STRIDE_COUNTS[path.name]
        assert {k: len(v) for k, v in shipped.items()} == counts
        assert all(v == list(range(0, kf * len(v), kf)) for v in shipped.values())
    assert sum(STRIDE_COUNTS["eth3d_stride5.json"][1].values()) == 97
    scenes = (LISTS_DIR / "seven_scenes_test.txt").read_text().split()
    assert len([s for s in scenes if not s.startswith("#") and "/" in s]) == 18
