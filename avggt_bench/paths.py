"""Where the project's files are: the Hydra config folder and the repository root."""

from __future__ import annotations

import os
from pathlib import Path

from avggt_bench.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def config_dir() -> Path:
    """The Hydra config folder: `$AVGGT_CONF_DIR`, else `conf/` of the repository."""
    env = os.environ.get("AVGGT_CONF_DIR")
    path = Path(env) if env else REPO_DIR / "conf"
    if not path.is_dir():
        raise ConfigError(
            f"config folder {path} not found; run from a clone of the repository "
            "(pip install -e .) or set AVGGT_CONF_DIR to its conf/ folder"
        )
    return path
