"""One protocol scene drawn for the report's page (`report/html.py`): a table of depth maps
(input, each variant, ground truth; one colour scale per scene) and error maps (one scale per
scene), their colourbars, and an interactive plotly point cloud with a trace per variant.

Maps are PNG data URIs (matplotlib colour maps, no figure: small files, upscaled by the browser),
input images JPEG; the plotly figure carries only its data: the page embeds plotly.js once.
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

import numpy as np

from avggt_bench.report.scene_views import SceneView

DEPTH_CMAP = "viridis"
ERROR_CMAP = "inferno"
NO_DATA = (0.82, 0.82, 0.82, 1.0)  # pixels without a value (no ground truth): light grey
MAX_PANEL_PX = 256  # longest side of a map as stored; the page shows it at PANEL_CSS_PX wide
PANEL_CSS_PX = 168


def data_uri(png: bytes) -> str:
    """A PNG as a `data:` URI (no file next to the page)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def jpeg_uri(rgb: np.ndarray) -> str:
    """An input image as a JPEG `data:` URI (photos: a fraction of a PNG's size); PNG when it is
    tiny (a few kB either way, and JPEG blocks would show when the browser enlarges it)."""
    from PIL import Image

    if max(rgb.shape[:2]) <= 128:
        return data_uri(_png(rgb))
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _png(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _shrink(a: np.ndarray) -> np.ndarray:
    step = max(1, int(np.ceil(max(a.shape[:2]) / MAX_PANEL_PX)))
    return a[::step, ::step]


def coloured(values: np.ndarray, vmin: float, vmax: float, cmap: str) -> bytes:
    """A 2-D map through a matplotlib colour map with fixed limits; NaN light grey."""
    import matplotlib

    colours = matplotlib.colormaps[cmap].with_extremes(bad=NO_DATA)
    norm = matplotlib.colors.Normalize(vmin=vmin, vmax=vmax, clip=True)
    rgba = colours(norm(np.ma.masked_invalid(_shrink(values))), bytes=True)
    return _png(rgba[..., :3])


def colourbar(label: str, vmin: float, vmax: float, cmap: str) -> bytes:
    """A horizontal colourbar for the limits of a scene's maps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(3.6, 0.75), dpi=100)
    ax = fig.add_axes((0.05, 0.58, 0.9, 0.3))
    norm = matplotlib.colors.Normalize(vmin=vmin, vmax=vmax)
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    bar = fig.colorbar(mappable, cax=ax, orientation="horizontal")
    bar.set_label(label, fontsize=10, labelpad=2)
    bar.ax.tick_params(labelsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def limits(view: SceneView) -> tuple[float, float, float]:
    """(depth min, depth max, error max) shared by every map of the scene: 1st-99th percentile
    of the ground truth and the aligned predictions at the drawn views, 99th of the errors."""
    depth, errors = [], []
    sel = view.views
    if view.gt is not None:
        depth.append(view.gt.depth[sel][view.gt.valid[sel]])
    for v in view.variants:
        if v.depth is not None:
            d = v.depth[sel]
            depth.append(d[view.gt.valid[sel]] if v.error is not None else d.reshape(-1))
        if v.error is not None:
            errors.append(v.error[sel].reshape(-1))
    values = np.concatenate(depth) if depth else np.zeros(1)
    values = values[np.isfinite(values)]
    lo, hi = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    err = np.concatenate(errors) if errors else np.zeros(1)
    err = err[np.isfinite(err)]
    emax = float(np.percentile(err, 99)) if err.size else 1.0
    hi = hi if hi > lo else lo + 1.0
    return float(lo), float(hi), emax if emax > 0 else 1.0


def _img(uri: str, cls: str, title: str, vmin: float | None = None, vmax: float | None = None):
    scale = "" if vmin is None else f' data-vmin="{vmin:.9g}" data-vmax="{vmax:.9g}"'
    return (
        f'<td><img class="{cls}" src="{uri}" alt="{html.escape(title)}" '
        f'title="{html.escape(title)}"{scale}></td>'
    )


def _blank(n: int) -> str:
    return '<td class="blank"></td>' * n


def _rel(path: Path, out_dir: Path) -> str:
    return html.escape(Path(os.path.relpath(path, out_dir)).as_posix(), quote=True)


def panels(view: SceneView, out_dir: Path) -> str:
    """The table of maps: a row for the input, each variant, the ground truth."""
    lo, hi, emax = limits(view)
    sel = view.views
    n = len(sel)
    head = (
        f'<tr><th></th><th colspan="{n}">depth</th>'
        f'<th colspan="{n}" class="errhead">|error| vs ground truth</th></tr>'
        "<tr><th></th>" + "".join(f"<th>view {view.frame_of(i)}</th>" for i in sel) * 2 + "</tr>"
    )
    rows = [head]
    if view.images is not None:
        cells = "".join(
            _img(jpeg_uri(_shrink(view.images[i])), "rgb", f"input {view.frame_of(i)}") for i in sel
        )
        rows.append(f'<tr class="input"><th>input</th>{cells}{_blank(n)}</tr>')
    for v in view.variants:
        name = label = html.escape(v.label, quote=True)
        if v.ply is not None:
            label += f'<br><a href="{_rel(v.ply, out_dir)}">full cloud (.ply)</a>'
        if v.note:
            label += f'<div class="note">{html.escape(v.note)}</div>'
        if v.depth is None:
            rows.append(
                f'<tr class="variant"><th>{label}</th><td colspan="{2 * n}" class="missing">'
                "no depth to show</td></tr>"
            )
            continue
        cells = "".join(
            _img(
                data_uri(coloured(v.depth[i], lo, hi, DEPTH_CMAP)),
                "depth",
                f"depth {view.frame_of(i)}",
                lo,
                hi,
            )
            for i in sel
        )
        if v.error is not None:
            cells += "".join(
                _img(
                    data_uri(coloured(v.error[i], 0.0, emax, ERROR_CMAP)),
                    "error",
                    f"error {view.frame_of(i)}",
                    0.0,
                    emax,
                )
                for i in sel
            )
        else:
            cells += _blank(n)
        rows.append(f'<tr class="variant" data-variant="{name}"><th>{label}</th>{cells}</tr>')
    if view.gt is not None:
        cells = "".join(
            _img(
                data_uri(coloured(view.gt.depth[i], lo, hi, DEPTH_CMAP)),
                "depth gt",
                f"ground truth {view.frame_of(i)}",
                lo,
                hi,
            )
            for i in sel
        )
        rows.append(f'<tr class="gt"><th>ground truth</th>{cells}{_blank(n)}</tr>')
    bars = [_img(data_uri(colourbar("depth (aligned)", lo, hi, DEPTH_CMAP)), "bar", "depth")]
    if any(v.error is not None for v in view.variants):
        bars.append(_img(data_uri(colourbar("|error|", 0.0, emax, ERROR_CMAP)), "bar", "error"))
    return (
        f'<table class="panels">{"".join(rows)}</table>'
        f'<table class="bars"><tr>{"".join(bars)}</tr></table>'
    )


def _hex(colours: np.ndarray | None, n: int) -> list[str] | str:
    if colours is None:
        return "#1f77b4"
    return [f"#{int(r):02x}{int(g):02x}{int(b):02x}" for r, g, b in colours[:n]]


def cloud(view: SceneView, div_id: str) -> str:
    """The plotly 3-D scatter of the scene (a trace per variant and the ground truth), as a
    `<div>` and its script; plotly.js itself is not included."""
    import plotly.graph_objects as go
    import plotly.io as pio

    fig = go.Figure()
    clouds = [(v.label, v.points, v.colours) for v in view.variants if v.points is not None]
    if view.gt_points is not None:
        clouds.append(("ground truth", view.gt_points, view.gt_colours))
    for label, pts, colours in clouds:
        pts = np.asarray(pts, dtype=np.float32)
        fig.add_trace(
            go.Scatter3d(
                x=pts[:, 0],
                y=pts[:, 1],
                z=pts[:, 2],
                mode="markers",
                name=f"{label} ({len(pts)} points)",
                marker={"size": 2, "color": _hex(colours, len(pts))},
                hoverinfo="name",
            )
        )
    scene: dict = {"aspectmode": "data"}
    if view.gt is not None:  # face the scene from behind the first ground-truth camera
        rot = view.gt.w2c[0][:3, :3]
        up, forward = -rot[1], rot[2]
        eye = -1.6 * forward + 0.6 * up
        scene["camera"] = {
            "up": dict(zip("xyz", map(float, up))),
            "eye": dict(zip("xyz", map(float, eye))),
        }
    fig.update_layout(
        template="none",
        height=560,
        margin={"l": 0, "r": 0, "t": 30, "b": 0},
        legend={"orientation": "h", "y": 1.02, "x": 0, "itemsizing": "constant"},
        scene=scene,
        font={"family": "sans-serif", "size": 12},
    )
    return pio.to_html(
        fig,
        include_plotlyjs=False,
        full_html=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )


__all__ = ["cloud", "colourbar", "coloured", "data_uri", "limits", "panels"]
