"""`index.html`: the report folder as one self-contained page, openable offline.

The page shows what the report wrote (summary.md rendered as it is, with its plots embedded as
PNG data URIs, and links to every table file beside it), then, per protocol preset, the scenes
whose predictions were saved (`predictions.save=true`): depth maps of the dense job, each
accelerated variant and the ground truth on one colour scale, error maps, and an interactive
point cloud (`report/scene_views.py` computes, `report/scene_html.py` draws).

Nothing is fetched: plotly.js is embedded once in the page's head (only when a point cloud is
drawn), figures carry data only, fonts are the system's, and links to `http(s)://` addresses in
the markdown become plain text. Missing data (no saved predictions, ground truth unavailable)
is a visible note; an error in one scene is shown in its place and the page still builds.
"""

from __future__ import annotations

import copy
import html
import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd

from avggt_bench.report.families import Family, families
from avggt_bench.report.scene_html import PANEL_CSS_PX, cloud, data_uri, panels
from avggt_bench.report.scene_views import scene_view

log = logging.getLogger(__name__)

MAX_SCENES = 6  # scenes drawn per family; the others are listed
POINTS_PER_TRACE = 5000  # points of each cloud on the page (seeded subsample)
TABLE_SUFFIXES = (".md", ".csv", ".tex")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em auto;
       max-width: 1500px; padding: 0 1em; color: #222; line-height: 1.4; }
h1, h2, h3, h4 { line-height: 1.2; }
nav ul { columns: 2; }
.summary table, table.files { border-collapse: collapse; display: block; overflow-x: auto;
       font-size: 13px; margin: 0.5em 0 1em; }
.summary th, .summary td, table.files td { border: 1px solid #ccc; padding: 2px 6px;
       white-space: nowrap; }
.summary th { background: #f2f2f2; }
.summary img { max-width: 100%; }
.summary blockquote { border-left: 4px solid #e0a000; margin: 0.5em 0; padding: 0 0.8em;
       background: #fff8e0; }
code { background: #f4f4f4; padding: 0 3px; border-radius: 3px; }
section.family { border-top: 2px solid #888; margin-top: 2em; }
section.scene { border: 1px solid #ddd; border-radius: 6px; padding: 0.5em 1em; margin: 1em 0; }
table.panels { border-collapse: collapse; }
table.panels th { font-weight: normal; font-size: 13px; padding: 2px 6px; }
table.panels tr > th:first-child { text-align: right; max-width: 14em; font-weight: bold; }
table.panels th.errhead { border-left: 2px solid #999; }
table.panels td { padding: 2px; }
table.panels img { width: PANELpx; image-rendering: pixelated; display: block; }
table.bars img { width: 360px; }
.note, .missing { color: #8a5a00; font-size: 13px; font-weight: normal; }
.error-box { color: #a00000; background: #fff0f0; border: 1px solid #e0a0a0; padding: 0.5em; }
.caption { font-size: 13px; color: #555; max-width: 100em; }
"""


def _markdown_html(text: str, out_dir: Path) -> str:
    """summary.md as HTML: plots inlined, external links as plain text."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)

    def inline(match: re.Match[str]) -> str:
        src = html.unescape(match.group(1))
        path = out_dir / src
        if src.startswith(("data:", "/")) or not path.is_file():
            return match.group(0)
        return f'src="{data_uri(path.read_bytes())}"'

    body = re.sub(r'src="([^"]+)"', inline, body)
    return re.sub(r'<a href="https?://[^"]*"[^>]*>(.*?)</a>', r"\1", body, flags=re.S)


def _files(out_dir: Path) -> str:
    found = sorted(p for p in out_dir.iterdir() if p.is_file() and p.suffix in TABLE_SUFFIXES)
    plots = sorted((out_dir / "plots").glob("*.png")) if (out_dir / "plots").is_dir() else []
    rows = [
        f'<tr><td><a href="{html.escape(p.relative_to(out_dir).as_posix())}">'
        f"{html.escape(p.relative_to(out_dir).as_posix())}</a></td>"
        f"<td>{p.stat().st_size / 1024:.1f} KiB</td></tr>"
        for p in [*found, *plots]
    ]
    return f'<table class="files">{"".join(rows)}</table>' if rows else "<p>(none)</p>"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "x"


def _load_scenes(record: dict[str, Any], wanted: list[str]) -> tuple[Any, dict[str, Any]]:
    from avggt_bench.records.replay import RecordScenes

    replay = RecordScenes(record)
    return replay, replay.scenes(wanted)


def _ground_truth(family: Family, wanted: list[str]) -> tuple[Any, dict[str, Any], str]:
    """(RecordScenes or None, scene id -> Scene, note): the family's ground truth, loaded once,
    only the wanted scenes, with depth even when the preset itself scores none (its
    `load_depth` switch, `data/presets.py`), else as the preset loads it."""
    record = family.members[0].record
    with_depth = copy.deepcopy(record)
    with_depth.setdefault("config", {}).setdefault("dataset", {})["load_depth"] = True
    try:
        return (*_load_scenes(with_depth, wanted), "")
    except Exception as exc:
        log.info("index.html: %s: no ground-truth depth (%s)", family.title, exc)
    try:
        replay, scenes = _load_scenes(record, wanted)
        return replay, scenes, "the dataset gives no ground-truth depth"
    except Exception as exc:
        return None, {}, f"ground truth unavailable ({type(exc).__name__}: {exc})"


def _scene(
    family: Family, sid: str, gt: tuple[Any, dict[str, Any], str], out_dir: Path, anchor: str
) -> str:
    replay, scenes, note = gt
    head = f'<section class="scene" id="{anchor}" data-scene="{html.escape(sid, quote=True)}">'
    head += f"<h4>scene {html.escape(sid)}</h4>"
    try:
        scene = scenes.get(sid)
        if scene is None and not note:
            note = "the preset does not load this scene now (skipped or removed)"
        view = scene_view(
            family, sid, scene, replay, note if scene is None else "", POINTS_PER_TRACE
        )
        parts = [head]
        if view.gt_note or view.gt is None:
            gt_note = view.gt_note or note or "no ground truth"
            parts.append(f'<p class="note">Ground truth not shown: {html.escape(gt_note)}</p>')
        if not view.views:
            parts.append('<p class="note">No predictions of this scene could be read.</p>')
            parts += [_variant_notes(view), "</section>"]
            return "".join(parts)
        parts.append(panels(view, out_dir))
        parts.append(f'<p class="caption">{html.escape(view.depth_caption)}</p>')
        parts.append(cloud(view, f"cloud-{anchor}"))
        parts.append(f'<p class="caption">{html.escape(view.cloud_caption)}</p>')
        return "".join([*parts, "</section>"])
    except Exception as exc:  # this scene only: the page still builds
        log.exception("index.html: scene %s of %s", sid, family.title)
        return (
            f'{head}<p class="error-box">This scene could not be drawn: '
            f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</p></section>"
        )


def _variant_notes(view: Any) -> str:
    items = [f"<li>{html.escape(v.label)}: {html.escape(v.note)}</li>" for v in view.variants]
    return f'<ul class="note">{"".join(items)}</ul>'


def _family(family: Family, out_dir: Path, max_scenes: int, anchor: str) -> tuple[str, bool]:
    """The family's section (id `anchor`) and whether it drew a point cloud."""
    parts = [f'<section class="family" id="{anchor}"><h3>{html.escape(family.title)}</h3>']
    jobs = "".join(
        f"<li>{html.escape(m.label)}: <code>{html.escape(m.path.name)}</code> "
        f"({len(m.files)} scenes saved)</li>"
        for m in family.members
    )
    parts.append(f"<ul>{jobs}</ul>")
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in family.notes]
    scene_ids = family.scene_ids
    shown = scene_ids[:max_scenes]
    if len(scene_ids) > len(shown):
        rest = ", ".join(scene_ids[len(shown) :])
        parts.append(
            f'<p class="note">{len(shown)} of {len(scene_ids)} scenes shown (the page keeps its '
            f"size); not shown: {html.escape(rest)}</p>"
        )
    if not shown:
        parts.append('<p class="note">No scene of these jobs has saved predictions.</p>')
        return "".join([*parts, "</section>"]), False
    gt = _ground_truth(family, shown)
    body = [_scene(family, sid, gt, out_dir, f"{anchor}-{_slug(sid)}") for sid in shown]
    drew = any('class="plotly-graph-div"' in b for b in body)
    return "".join([*parts, *body, "</section>"]), drew


def _record_paths(df: pd.DataFrame | None) -> tuple[list[Path], dict[Path, str]]:
    if df is None or "path" not in df:
        return [], {}
    rows = df[df["path"].notna()]
    labels = dict(zip(rows["path"].map(Path), rows.get("variant", rows["path"]).astype(str)))
    return list(labels), labels


def write_index(
    out_dir: Path,
    df: pd.DataFrame | None = None,
    *,
    max_scenes: int = MAX_SCENES,
) -> Path:
    """Write `<out_dir>/index.html` from the report files already in `out_dir` and the saved
    predictions of the records in `df` (its `path` column); returns its path."""
    out_dir = Path(out_dir)
    summary = out_dir / "summary.md"
    toc = ['<li><a href="#summary">Summary</a></li>', '<li><a href="#files">Files</a></li>']
    body = ['<section id="summary" class="summary">']
    if summary.is_file():
        body.append(_markdown_html(summary.read_text(), out_dir))
    else:
        body.append('<p class="note">No summary.md in this folder.</p>')
    body += ["</section>", '<section id="files"><h2>Files</h2>', _files(out_dir), "</section>"]
    body.append('<section id="scenes"><h2>Scenes</h2>')
    toc.append('<li><a href="#scenes">Scenes</a></li>')
    paths, labels = _record_paths(df)
    groups, notes = families(paths, labels)
    body += [f'<p class="note">{html.escape(n)}</p>' for n in notes]
    if not groups:
        body.append(
            '<p class="note">No protocol job among these records saved its predictions; run '
            "jobs with <code>predictions.save=true</code> to see depth maps and point clouds "
            "here.</p>"
        )
    plotly = False
    for n, family in enumerate(groups):
        anchor = f"family-{n}-{_slug(family.title)}"  # unique even when two titles are alike
        section, drew = _family(family, out_dir, max_scenes, anchor)
        body.append(section)
        plotly |= drew
        toc.append(f'<li><a href="#{anchor}">{html.escape(family.title)}</a></li>')
    body.append("</section>")
    head = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>avggt_bench report: {html.escape(out_dir.name)}</title>",
        f"<style>{CSS.replace('PANEL', str(PANEL_CSS_PX))}</style>",
    ]
    if plotly:
        from plotly.offline import get_plotlyjs

        head.append(f'<script type="text/javascript">{get_plotlyjs()}</script>')
    page = "".join(
        [
            *head,
            "</head><body>",
            f"<h1>avggt_bench report: {html.escape(out_dir.name)}</h1>",
            f"<nav><ul>{''.join(toc)}</ul></nav>",
            *body,
            "</body></html>\n",
        ]
    )
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return path


__all__ = ["write_index"]
