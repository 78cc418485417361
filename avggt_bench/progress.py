"""Progress bars for long stages: shown on an interactive terminal, quiet in CI and in logs.

`AVGGT_PROGRESS=1` forces bars on, `AVGGT_QUIET=1` (or `CI` set) forces them off; otherwise they
show only when stderr is a TTY and the work is long enough to be worth one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def enabled(total: int | None = None, min_items: int = 1) -> bool:
    if os.environ.get("AVGGT_PROGRESS") == "1":
        return True
    if os.environ.get("AVGGT_QUIET") == "1" or os.environ.get("CI"):
        return False
    if total is not None and total < min_items:
        return False
    return sys.stderr.isatty()


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    min_items: int = 1,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar on stderr, disabled unless `enabled()`."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=not enabled(total, min_items),
        **kwargs,
    )
