"""A mistyped config key gets the closest valid key, not Hydra's `+key=value` hint (which would
add the typo to the config as a new key)."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def _groups(conf_dir: Path) -> set[str]:
    return {p.name for p in conf_dir.iterdir() if p.is_dir()} | {"hydra"}


def _choices(override: Any) -> list[str]:
    if override.is_sweep_override():
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


def unknown_override_hint(args: list[str], conf_dir: Path) -> str | None:
    """A message naming the first override whose key the config lacks, with the closest valid
    key; None when every key exists (or when the check cannot tell: Hydra then decides)."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        overrides = OverridesParser.create().parse_overrides(
            [a for a in args if "=" in a and not a.startswith("-")]
        )
    except Exception:  # a syntax error: Hydra's own message is the right one
        return None
    groups = _groups(conf_dir)
    plain = [
        o
        for o in overrides
        if not (o.is_add() or o.is_force_add() or o.is_delete())
        and o.key_or_group.split(".")[0].split("/")[0] != "hydra"
        and o.package is None
    ]
    swept = {o.key_or_group for o in plain if o.key_or_group in groups and o.is_sweep_override()}
    # a key under a swept group may exist for some choices only: Hydra judges each job
    checked = [
        o
        for o in plain
        if o.key_or_group not in groups and o.key_or_group.split(".")[0] not in swept
    ]
    # fast path: a key found in the primary config or in any option file of its group is left to
    # Hydra; only a key found nowhere costs a composition (for the closest valid key)
    checked = [o for o in checked if not _known_somewhere(conf_dir, o.key_or_group, groups)]
    if not checked:
        return None
    chosen = [f"{o.key_or_group}={_choices(o)[0]}" for o in plain if o.key_or_group in groups]
    dotted = any("." in o.key_or_group for o in checked)
    experiment = any(o.key_or_group == "experiment" for o in plain)
    # top-level keys only: the primary config file tells, no composition needed (fast)
    cfg = _compose(conf_dir, chosen) if dotted or experiment else _primary(conf_dir)
    if cfg is None:
        return None
    for o in checked:
        key = o.key_or_group
        parent, _, leaf = key.rpartition(".")
        try:
            node = (
                OmegaConf.select(cfg, parent, throw_on_resolution_failure=False) if parent else cfg
            )
        except Exception:
            return None
        if not isinstance(node, DictConfig):
            return None  # a missing parent is reported for it; a list index: Hydra judges
        if leaf in list(node.keys()):  # keys() does not resolve interpolations
            continue
        names = sorted({str(k) for k in node} | (set() if parent else groups - {"hydra"}))
        close = difflib.get_close_matches(leaf, names, n=1)
        where = f"in {parent}" if parent else "at the top level"
        suggestion = (
            f"did you mean {(parent + '.' if parent else '') + close[0]}? " if close else ""
        )
        return (
            f"unknown config key {key!r} ({where}); {suggestion}"
            f"valid keys {where}: {', '.join(names)}. "
            f"(To add a new key on purpose, write +{key}=...)"
        )
    return None


def _compose(conf_dir: Path, overrides: list[str]) -> DictConfig | None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return None
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return compose("config", overrides=overrides)
    except Exception:
        return None


def _primary(conf_dir: Path) -> DictConfig | None:
    try:
        cfg = OmegaConf.load(conf_dir / "config.yaml")
    except Exception:
        return None
    return cfg if isinstance(cfg, DictConfig) else None


def _has(node: Any, dotted: str) -> bool:
    """Whether the raw (unresolved) config holds the dotted key."""
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _raw(path: Path) -> Any:
    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def _known_somewhere(conf_dir: Path, key: str, groups: set[str]) -> bool:
    head, _, rest = key.partition(".")
    try:
        if _has(_raw(conf_dir / "config.yaml"), key):
            return True
        if head not in groups or not rest:
            return False
        return any(_has(_raw(option), rest) for option in (conf_dir / head).glob("*.yaml"))
    except Exception:
        return True  # cannot tell: let Hydra judge
