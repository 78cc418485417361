"""From an attention config (a named preset or a mapping) to one route string per global layer.

Resolution: every layer starts from the preset's *method* (e.g. `dense`: all
`global`); an explicit `routes` list replaces it; then each `overrides` entry
`{layers: "20-23", route: "frame"}` is applied in order, later entries winning. The result is
validated (length, known route names) and stored in the record.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from avggt_bench.attention.routes import ROUTES, RouteSpec, parse_route
from avggt_bench.errors import ConfigError
from avggt_bench.paths import config_dir
from avggt_bench.registry import Registry

# method name -> f(config, family, num_layers) -> route strings
Method = Callable[[Mapping[str, Any], str, int], list[str]]
METHODS: Registry[Method] = Registry("attention method")
# method name -> f(config, family, num_layers) -> config with every `auto` resolved
SWITCH_RESOLVERS: dict[str, Method] = {}
# route name -> f(config, family) -> route string: a bare name in `routes`/`overrides` takes the
# config's switches for that route (e.g. `mean` picks up g2m_scope), `auto` resolved per family
BARE_ROUTES: dict[str, Callable[[Mapping[str, Any], str], str]] = {}
# route name -> f(params, family) -> params: fills the family-dependent defaults a route string
# left out or set to `auto` (e.g. sga's keep_first_frame: VGGT has a reference frame, π³ none)
ROUTE_DEFAULTS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {}


@METHODS.register("dense", "the original model: dense global attention in every global layer")
def _dense(cfg: Mapping[str, Any], family: str, num_layers: int) -> list[str]:
    return ["global"] * num_layers


def _merge_defaults(cfg: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    """Apply a preset's `defaults: [other_preset, _self_]` list (same group), as Hydra does."""
    defaults = cfg.pop("defaults", None) or []
    merged: dict[str, Any] = {}
    for entry in defaults:
        if entry == "_self_":
            continue
        if entry in seen:
            raise ConfigError(f"attention presets include each other in a loop: {(*seen, entry)}")
        merged.update(load_preset(entry, (*seen, entry)))
    merged.update(cfg)
    return merged


def available_presets() -> list[str]:
    return sorted(p.stem for p in (config_dir() / "attention").glob("*.yaml"))


def load_preset(name: str, seen: tuple[str, ...] = (), resolve: bool = True) -> dict[str, Any]:
    """The `conf/attention/<name>.yaml` preset as a plain dict (its defaults list applied);
    `resolve=False` keeps interpolations (`${...key}`) for a later merge with overrides."""
    path = config_dir() / "attention" / f"{name}.yaml"
    if not path.is_file():
        names = Registry("attention preset")
        for preset in available_presets():
            names.add(preset, dict)
        raise ConfigError(names.unknown_message(name))
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=resolve)
    return _merge_defaults(cfg, seen or (name,))


def as_attention_config(attention: str | Mapping | DictConfig | None) -> dict[str, Any]:
    """Normalise a preset name, a mapping or a DictConfig to a plain dict with a `method`."""
    if attention is None:
        attention = "dense"
    if isinstance(attention, str):
        cfg = load_preset(attention)
    elif isinstance(attention, DictConfig):
        cfg = OmegaConf.to_container(attention, resolve=True)
    elif isinstance(attention, Mapping):
        cfg = dict(attention)
        if "method" not in cfg and "name" in cfg:  # a preset name plus switch overrides
            # merged before resolving, so the preset's interpolations see the overrides
            merged = OmegaConf.merge(load_preset(cfg["name"], resolve=False), cfg)
            cfg = OmegaConf.to_container(merged, resolve=True)
    else:
        raise ConfigError(
            f"attention must be a preset name or a mapping, got {type(attention).__name__}"
        )
    cfg.setdefault("name", cfg.get("method", "custom"))
    cfg.setdefault("method", "dense")
    cfg.setdefault("overrides", [])
    load_plugins(cfg.get("plugins"))
    return cfg


def load_plugins(modules: Iterable[str] | str | None) -> None:
    """Import the modules an attention config names under `plugins` (routes and methods defined
    outside the package register themselves on import); an import is done once per process."""
    if not modules:
        return
    for name in [modules] if isinstance(modules, str) else modules:
        try:
            importlib.import_module(str(name))
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"attention.plugins names {name!r}, which cannot be imported ({exc}); give an "
                "importable module path (on PYTHONPATH or installed), e.g. my_methods.top_k"
            ) from exc


def parse_layers(spec: Any, num_layers: int) -> list[int]:
    """Layer indices from `5`, `"20-23"`, `"0-8,20"`, `[1, 2]` or `"all"`; validated."""
    if isinstance(spec, bool):
        raise ConfigError(f"layer spec {spec!r} is not a layer index")
    if isinstance(spec, int):
        out = [spec]
    elif isinstance(spec, str):
        if spec.strip() == "all":
            return list(range(num_layers))
        out = []
        for part in spec.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = part.split("-", 1)
                out.extend(range(int(lo), int(hi) + 1))
            elif part:
                out.append(int(part))
    elif isinstance(spec, Sequence):
        out = [int(x) for x in spec]
    else:
        raise ConfigError(f"cannot read layers from {spec!r}; use e.g. 5, '20-23' or [1, 2]")
    bad = [i for i in out if not 0 <= i < num_layers]
    if bad:
        raise ConfigError(
            f"layer indices {bad} out of range: this model has {num_layers} global layers "
            f"(valid 0-{num_layers - 1})"
        )
    return out


def resolve_attention(
    attention: str | Mapping[str, Any] | DictConfig | None, family: str, num_layers: int
) -> tuple[list[str], dict[str, Any]]:
    """One canonical route string per global layer, and the config with `auto` resolved."""
    cfg = as_attention_config(attention)
    resolver = SWITCH_RESOLVERS.get(cfg["method"])
    resolved = resolver(cfg, family, num_layers) if resolver else dict(cfg)
    return resolve_routes(cfg, family, num_layers), resolved


def resolve_routes(attention: Mapping[str, Any], family: str, num_layers: int) -> list[str]:
    """One canonical route string per global layer."""
    cfg = as_attention_config(attention)
    explicit = cfg.get("routes")
    if explicit is not None:
        routes = [str(r) for r in explicit]
        if len(routes) != num_layers:
            raise ConfigError(
                f"attention.routes has {len(routes)} entries; this {family} model has "
                f"{num_layers} global layers, so give exactly {num_layers} (or use overrides)"
            )
    else:
        routes = METHODS.build(cfg["method"], cfg, family, num_layers)
    resolver = SWITCH_RESOLVERS.get(cfg["method"])
    switches = resolver(cfg, family, num_layers) if resolver else cfg
    for entry in cfg.get("overrides") or []:
        if not isinstance(entry, Mapping) or {"layers", "route"} - set(entry):
            raise ConfigError(
                f"attention override {entry!r} must be a mapping with 'layers' and 'route', "
                "e.g. {layers: '20-23', route: frame}"
            )
        for i in parse_layers(entry["layers"], num_layers):
            routes[i] = str(entry["route"])
    canonical = []
    for r in routes:
        if r in BARE_ROUTES:
            r = BARE_ROUTES[r](switches, family)
        spec = parse_route(r)
        if spec.name not in ROUTES:
            raise ConfigError(ROUTES.unknown_message(spec.name))
        if spec.name in ROUTE_DEFAULTS:
            spec = RouteSpec(spec.name, ROUTE_DEFAULTS[spec.name](dict(spec.params), family))
        canonical.append(str(spec))
    return canonical
