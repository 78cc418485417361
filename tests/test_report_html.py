"""The report's index.html: one self-contained page per results folder. Built from a tiny
synthetic protocol run (dense and AVGGT(9) of the small model, predictions saved), it embeds
plotly.js once and nothing from the network, has one section per saved scene whose depth maps
share one colour scale, and turns missing data or a broken scene into a note in its place; in a
real headless Chromium (slow test) it loads with no console error and no network request."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_job_protocol import compose_job

from avggt_bench.records.saved_predictions import saved_scenes
from avggt_bench.report import html as page
from avggt_bench.report import load_table, write_report
from avggt_bench.report.scene_views import GroundTruth, align_depth, pick_views
from avggt_bench.run import run_job

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "model=vggt_small",
    "model.preprocess.size=42",
    "dataset=synthetic_sparse",
    "dataset.frames=4",
    "dataset.width=56",
    "dataset.height=42",
    "+dataset.max_scenes=2",
    "timing.warmup=0",
    "timing.repeats=1",
    "predictions.save=true",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A records folder with a dense and an AVGGT(9) protocol job that saved predictions."""
    root = tmp_path_factory.mktemp("html_runs")
    for attention in ("dense", "avggt_9"):
        rec = run_job(compose_job(root, *TINY, f"attention={attention}"))
        assert rec.status == "ok", rec.message
    return root / "records"


def build(records: Path, out: Path) -> str:
    df, notes = load_table([records], [])
    write_report(df, notes, out)
    return (out / "index.html").read_text()


def scenes(text: str) -> dict[str, str]:
    pattern = r'<section class="scene"[^>]*data-scene="([^"]+)">(.*?)</section>'
    return dict(re.findall(pattern, text, re.S))


def clim(section: str, cls: str) -> set[tuple[str, str]]:
    pattern = rf'<img class="{cls}[^"]*"[^>]*data-vmin="([^"]+)" data-vmax="([^"]+)"'
    return set(re.findall(pattern, section))


def test_page_embeds_plotly_once_and_nothing_from_the_network(runs, tmp_path):
    from plotly.offline import get_plotlyjs

    text = build(runs, tmp_path / "out")
    assert text.count(get_plotlyjs()[-2000:]) == 1  # the bundle, once
    assert text.count("<script") == 1 + len(scenes(text))  # the bundle + one per figure
    page_itself = text.replace(get_plotlyjs(), "")  # plotly.js names web pages in its code
    urls = re.findall(r'(?:src|href)="([^"]*)"', page_itself)
    assert urls and not [u for u in urls if "://" in u]  # data:, #anchors, relative files
    assert "@import" not in page_itself and "<link" not in page_itself  # no external CSS, fonts
    ids = re.findall(r' id="([^"]+)"', page_itself)
    assert len(ids) == len(set(ids))  # every anchor and figure id unique
    rest_mb = (len(text.encode()) - len(get_plotlyjs().encode())) / 1e6
    assert rest_mb < 1.5, f"{rest_mb:.1f} MB besides plotly.js for two tiny scenes"


def test_one_section_per_saved_scene_with_a_shared_colour_scale(runs, tmp_path):
    text = build(runs, tmp_path / "out")
    saved = set()
    for record in runs.glob("*.json"):
        saved |= set(saved_scenes(record))
    found = scenes(text)
    assert set(found) == saved and len(saved) == 2
    for sid, section in found.items():
        rows = re.findall(r'<tr class="(variant|gt)"[^>]*><th>([^<]*)', section)
        assert [r[1] for r in rows] == ["dense (VGGT*)", "avggt_9", "ground truth"], sid
        depth, error = clim(section, "depth"), clim(section, "error")
        assert len(depth) == 1 and len(error) == 1, (sid, depth, error)
        assert section.count('class="depth') == 3 * 4  # 3 rows x 4 frames (all of them)
        assert section.count('class="error"') == 2 * 4
        assert "plotly-graph-div" in section and "error-box" not in section
        assert "median scale alignment" in section  # the caption says which alignment


def test_shared_scale_spans_the_ground_truth(runs, tmp_path):
    text = build(runs, tmp_path / "out")
    for section in scenes(text).values():
        [(lo, hi)] = clim(section, "depth")
        assert 0 < float(lo) < float(hi) < 100  # metres of the synthetic room, not [0, 1]


def test_missing_predictions_and_ground_truth_are_notes(runs, tmp_path):
    folder = tmp_path / "records"
    folder.mkdir()
    for record in runs.glob("*.json"):
        shutil.copy(record, folder)  # the records without their .predictions folders
    text = build(folder, tmp_path / "no_predictions")
    assert "saved no predictions" in text and not scenes(text)
    broken = tmp_path / "broken"
    shutil.copytree(runs, broken)
    for path in broken.glob("*.json"):
        rec = json.loads(path.read_text())
        rec["config"]["dataset"]["dataset"] = "no_such_loader"
        path.write_text(json.dumps(rec))
    text = build(broken, tmp_path / "no_gt")
    found = scenes(text)
    assert len(found) == 2
    for section in found.values():
        assert "Ground truth not shown: ground truth unavailable" in section
        assert clim(section, "depth") and not clim(section, "error")
        assert "plotly-graph-div" in section and "error-box" not in section


def test_a_broken_scene_is_shown_in_its_place(runs, tmp_path, monkeypatch):
    copy = tmp_path / "records"
    shutil.copytree(runs, copy)
    [fast] = [p for p in copy.glob("*.json") if "avggt_9" in p.name]
    first, second = sorted(saved_scenes(fast).values())
    first.write_bytes(first.read_bytes()[:100])  # truncated: that variant's row says so
    real = page.scene_view

    def fail_second(family, sid, *args, **kwargs):
        if sid == second.stem:
            raise RuntimeError("drawing failed on purpose")
        return real(family, sid, *args, **kwargs)

    monkeypatch.setattr(page, "scene_view", fail_second)
    found = scenes(build(copy, tmp_path / "out"))
    assert "error-box" in found[second.stem] and "on purpose" in found[second.stem]
    ok = found[first.stem]
    assert "error-box" not in ok and "DataError" in ok
    assert len(clim(ok, "depth")) == 1 and ok.count('class="error"') == 4  # dense only


def test_markdown_plots_are_inlined_and_web_links_become_text(tmp_path):
    from PIL import Image

    (tmp_path / "plots").mkdir()
    Image.new("RGB", (4, 3), "red").save(tmp_path / "plots" / "a.png")
    md = "# T\n\n![a](plots/a.png)\n\n[paper](https://example.org/x) and [t](summary.csv)\n"
    out = page._markdown_html(md, tmp_path)
    assert 'src="data:image/png;base64,' in out and "plots/a.png" not in out
    assert "example.org" not in re.findall(r'href="([^"]*)"', out) and "paper" in out
    assert 'href="summary.csv"' in out


def test_pick_views_spreads_up_to_four():
    assert pick_views(10) == [0, 3, 6, 9]
    assert pick_views(2) == [0, 1] and pick_views(0) == []


def test_per_view_median_alignment_undoes_a_scale_per_view():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 5, (3, 4, 5))
    valid = np.ones_like(gt, dtype=bool)
    valid[0, 0, 0] = False
    truth = GroundTruth(np.where(valid, gt, np.nan), valid, np.zeros((*gt.shape, 3)), np.eye(4))
    pred = gt * np.array([2.0, 0.5, 3.0])[:, None, None]
    aligned, note = align_depth(pred, truth, "median", "frame", {})
    assert note == "" and np.allclose(aligned[valid], gt[valid])


def check_html(page_path: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("playwright", reason="pip install -e '.[dev]'")
    if not Path("/usr/bin/chromium").is_file():
        pytest.skip("no /usr/bin/chromium (apt-get install chromium)")
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "check_html.py"), str(page_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_checker_fails_on_a_network_request_and_a_console_error(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><img src="https://example.org/x.png">'
        '<script>console.error("boom")</script></body></html>'
    )
    done = check_html(bad)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["external_requests"] == ["https://example.org/x.png"]
    assert {"type": "error", "text": "boom"} in summary["console_errors"]


@pytest.mark.slow
def test_page_opens_in_headless_chromium_offline(runs, tmp_path):
    build(runs, tmp_path)
    shot = tmp_path / "index.png"
    done = check_html(tmp_path / "index.html")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["figures"] == 2 and summary["external_requests"] == []
    assert summary["console_errors"] == [] and summary["page_errors"] == []
    from PIL import Image

    with Image.open(shot) as im:
        assert im.width >= 1000 and im.height > 2000  # the whole page, scenes included


def test_a_long_scene_uses_evenly_spaced_frames_and_says_so(runs, tmp_path, monkeypatch):
    from avggt_bench.report import scene_views

    monkeypatch.setattr(scene_views, "MAX_FRAMES", 3)  # the runs have 4 frames per scene
    for section in scenes(build(runs, tmp_path / "out")).values():
        heads = re.findall(r"<th>view (\d+)</th>", section)
        assert heads == ["0", "2", "3"] * 2  # depth and error columns
        assert "Only 3 of the 4 frames (evenly spaced) are used." in section
        assert section.count('class="depth') == 3 * 3 and "error-box" not in section


def test_an_exported_ply_is_linked_relative_to_the_page(runs, tmp_path):
    copy = tmp_path / "records"
    shutil.copytree(runs, copy)
    [dense] = [p for p in copy.glob("*.json") if "dense" in p.name]
    first = sorted(saved_scenes(dense).values())[0]
    ply = dense.with_name(dense.stem + ".exports") / f"{first.stem}.ply"
    ply.parent.mkdir()
    ply.write_text("ply\n")
    found = scenes(build(copy, tmp_path / "out"))
    link = f'href="../records/{ply.parent.name}/{ply.name}"'
    assert link in found[first.stem]
    assert [sid for sid, section in found.items() if ".ply" in section] == [first.stem]
