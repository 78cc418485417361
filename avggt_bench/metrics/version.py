"""The version of the metric code: a digest of its sources, kept in every record's provenance.

A re-scored record (`python -m avggt_bench.rescore`) says which metric code scored it; comparing
the digests tells whether the metrics of two records were computed by the same code even between
commits (the git SHA changes with any file, this only with the files that compute metrics).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from avggt_bench.paths import PACKAGE_DIR

# what computes a protocol's metrics: the metric functions, the preset rules, the adapters
SOURCES = ("metrics", "data/presets.py", "models/preprocess_geometry.py")


@cache
def metrics_code_version() -> str:
    """First 16 hex digits of SHA-256 over the metric sources (sorted by path)."""
    digest = hashlib.sha256()
    for path in _files():
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _files() -> list[Path]:
    found: list[Path] = []
    for name in SOURCES:
        path = PACKAGE_DIR / name
        found.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return found
