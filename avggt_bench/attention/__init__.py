"""Attention variants behind one seam: layouts, kernels, per-layer routes and methods.

Importing the package registers every method: each module of `avggt_bench.attention.methods` is
imported (found by listing the package, no import list), then every module named by the
`avggt_bench.attention` entry-point group of an installed distribution. A module outside both is
imported by name through an attention config's `plugins: [my.module]` list (`config.load_plugins`).
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

ENTRY_POINT_GROUP = "avggt_bench.attention"


def _discover() -> None:
    from avggt_bench.attention import methods

    for info in sorted(pkgutil.iter_modules(methods.__path__), key=lambda m: m.name):
        importlib.import_module(f"{methods.__name__}.{info.name}")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


_discover()
