"""Open a report's `index.html` in headless Chromium and check that it works offline.

    python scripts/check_html.py results/.../index.html [--screenshot index.png]
        [--chromium /usr/bin/chromium] [--timeout 60]

Fails (exit 1) on any console message of level error, any uncaught page error, any request
whose address is not `file:`, `data:` or `blob:` (such requests are also blocked, so nothing
leaves the machine), or a point cloud that plotly did not draw (no WebGL). Console warnings are
printed, not failed on. Saves a full-page screenshot (default: `<page>.png` beside the page),
reduced to a 256-colour palette (about a third of the size, to commit it; `--colours 0` keeps
full colour).

Uses Playwright (the `dev` extra) with the system's Chromium (Debian's `chromium` package),
never a downloaded browser; WebGL runs on SwiftShader (software), as headless Chromium has no
GPU here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

LOCAL = ("file:", "data:", "blob:", "about:")
ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--disable-gpu-sandbox"]
ARGS += ["--no-first-run", "--disable-background-networking", "--disable-component-update"]

# every plotly div has drawn its WebGL scene (or plotly has put its "no WebGL" notice)
DRAWN = """() => {
  const divs = [...document.querySelectorAll('.plotly-graph-div')];
  return divs.every(d => d._fullLayout !== undefined && d.querySelector('.main-svg'));
}"""
NO_WEBGL = """() => [...document.querySelectorAll('.plotly-graph-div')]
  .filter(d => /WebGL is not supported/i.test(d.innerText) || !d.querySelector('canvas'))
  .map(d => d.id)"""


def check(page_path: Path, screenshot: Path, chromium: str, timeout_s: float) -> dict[str, Any]:
    """Load the page, collect console messages, page errors and requests; save a screenshot."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("playwright is not installed: pip install -e '.[dev]' (uses the system Chromium)")
    if not Path(chromium).is_file():
        sys.exit(f"no Chromium at {chromium}: apt-get install chromium, or pass --chromium PATH")
    found: dict[str, Any] = {"console": [], "page_errors": [], "requests": [], "external": []}
    args = [*ARGS, *(["--no-sandbox"] if os.geteuid() == 0 else [])]  # root: no sandbox
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=args, headless=True)
        context = browser.new_context(viewport={"width": 1500, "height": 1000})

        def route(r: Any) -> None:
            if r.request.url.startswith(LOCAL):
                r.continue_()
            else:
                r.abort()

        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: found["console"].append({"type": m.type, "text": m.text}))
        page.on("pageerror", lambda e: found["page_errors"].append(str(e)))

        def request(r: Any) -> None:
            found["requests"].append(r.url[:120])
            if not r.url.startswith(LOCAL):
                found["external"].append(r.url)

        page.on("request", request)
        page.goto(page_path.resolve().as_uri(), wait_until="load", timeout=timeout_s * 1000)
        page.wait_for_function(DRAWN, timeout=timeout_s * 1000)
        page.wait_for_timeout(500)  # let WebGL finish its first frame
        found["figures"] = page.evaluate("document.querySelectorAll('.plotly-graph-div').length")
        found["figures_without_webgl"] = page.evaluate(NO_WEBGL)
        found["height_px"] = page.evaluate("document.documentElement.scrollHeight")
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    found["errors"] = [m for m in found["console"] if m["type"] == "error"]
    found["warnings"] = [m for m in found["console"] if m["type"] == "warning"]
    found["ok"] = not (
        found["errors"]
        or found["page_errors"]
        or found["external"]
        or found["figures_without_webgl"]
    )
    return found


def palette(png: Path, colours: int) -> None:
    """Rewrite a screenshot with at most `colours` colours (median cut, no dithering)."""
    from PIL import Image

    with Image.open(png) as im:
        small = im.convert("RGB").quantize(colours, Image.Quantize.MEDIANCUT, dither=0)
    small.save(png, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path, help="an index.html written by avggt_bench.report")
    parser.add_argument("--screenshot", type=Path, default=None, help="default: <page>.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to load and draw")
    parser.add_argument("--colours", type=int, default=256, help="palette size; 0: full colour")
    args = parser.parse_args(argv)
    if not args.page.is_file():
        parser.error(f"no such page: {args.page}")
    shot = args.screenshot or args.page.with_suffix(".png")
    found = check(args.page, shot, args.chromium, args.timeout)
    if args.colours:
        palette(shot, args.colours)
    summary = {
        "page": str(args.page),
        "page_mb": round(args.page.stat().st_size / 1e6, 2),
        "screenshot": str(shot),
        "screenshot_kb": round(shot.stat().st_size / 1024),
        "ok": found["ok"],
        "figures": found["figures"],
        "figures_without_webgl": found["figures_without_webgl"],
        "height_px": found["height_px"],
        "requests": len(found["requests"]),
        "external_requests": found["external"],
        "console_errors": found["errors"],
        "page_errors": found["page_errors"],
        "console_warnings": found["warnings"],
    }
    print(json.dumps(summary, indent=2))
    return 0 if found["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
