"""The report's figure read at its committed size: every text at least 10 px high, view-count
ticks at the measured view counts in plain numbers, error bars from the repeats, and the
random-weights caveat on the fidelity panel itself."""

from __future__ import annotations

import re

import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.text import Text
from test_report import record, write

from avggt_bench import report
from avggt_bench.report.plots import DPI, RANDOM_CAVEAT, figure, plot_all, view_ticks

VIEWS = (8, 16, 32, 64, 128)


def rows(tmp_path, weights: str = "random"):
    recs = []
    for v in VIEWS:
        t = v / 8
        recs.append(record("dense", views=v, times=(0.95 * t, t, 1.1 * t)))
        recs.append(
            record("avggt", views=v, sigma=9, times=(0.4 * t, 0.5 * t, 0.7 * t), fidelity=90.0)
        )
    for rec in recs:
        rec["model"]["weights"] = weights
        rec["memory"]["peak_gb"] = 0.9 + rec["job"]["num_views"] / 100
    df, _ = report.load_table([write(tmp_path / weights, *recs)])
    return report.add_speedups(df)


def texts(fig):
    fig.canvas.draw()  # tick labels exist once drawn
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def test_every_text_is_at_least_10_px_high_at_the_saved_resolution(tmp_path):
    fig = figure(rows(tmp_path), "vggt_small on cpu-test")
    px = [(t.get_text(), t.get_fontsize() * DPI / 72) for t in texts(fig)]
    assert len(px) > 40  # titles, labels, ticks, legend, view labels, the caveat
    small = [(text, size) for text, size in px if size < 10]
    assert not small
    assert fig.dpi == DPI
    [path] = plot_all(rows(tmp_path), tmp_path / "plots")
    import matplotlib.image

    height, width = matplotlib.image.imread(path).shape[:2]
    assert width >= 1000 and height >= 800  # 2x2 panels, not a 4-in-a-row strip


def test_view_axes_tick_at_the_measured_view_counts_in_plain_numbers(tmp_path):
    fig = figure(rows(tmp_path), "t")
    fig.canvas.draw()
    latency, speedup, memory, _ = fig.axes[:4]
    for ax in (latency, speedup, memory):
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == [str(v) for v in VIEWS]
        assert not [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()]
    for ax in (latency, memory):
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert labels and all(re.fullmatch(r"[0-9.]+", s) for s in labels), labels
    assert latency.get_yscale() == "log"  # 16x range: log with 1-2-5 ticks
    assert memory.get_yscale() == "linear"  # 0.98-2.18 GB: plain GB numbers


def test_error_bars_span_the_recorded_repeats(tmp_path):
    df = rows(tmp_path)
    fig = figure(df, "t")
    latency = fig.axes[0]
    bars = [c for c in latency.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2  # dense and AVGGT
    fast = df[df["attention"] == "avggt"].sort_values("num_views")
    _line, _caps, (segments,) = next(c for c in bars if c.get_label() == fast["variant"].iloc[0])
    spans = [v for seg in segments.get_segments() for v in (seg[0][1], seg[1][1])]
    expected = [v for pair in zip(fast["forward_min_s"], fast["forward_max_s"]) for v in pair]
    assert spans == pytest.approx(expected)  # fastest to slowest repeat at every view count


def test_the_random_weights_caveat_is_on_the_fidelity_panel(tmp_path):
    fig = figure(rows(tmp_path), "t")
    fidelity = fig.axes[3]
    assert RANDOM_CAVEAT in [t.get_text() for t in fidelity.texts]
    real = figure(rows(tmp_path, weights="checkpoint"), "t")
    assert RANDOM_CAVEAT not in [t.get_text() for t in real.axes[3].texts]


def test_view_ticks_keep_neighbours_apart_on_a_log_axis():
    assert view_ticks([8, 16, 32]) == [8, 16, 32]
    assert view_ticks([100, 110, 200, 800]) == [100, 200, 800]
    assert view_ticks([1, 2, 3, 4, 0, None]) == [1, 2, 3, 4]
