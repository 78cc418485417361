"""Per-layer routes: how one global layer mixes tokens.

A route is data: the attention config resolves to one route string per global layer (for example
`"global"` or, in later variants, `"sga(sigma=9,diag=1,mean=1)"`). `parse_route` turns a string into
a `RouteSpec`;
`build_route` turns a spec into a `Route`, whose `run(block, x, pos, layout)` executes
the global block on tokens `x` `[B, S*P, C]` laid out as `layout` describes.

A route owns everything about itself: besides `run`, its analytic `cost` (the cost model sums the
routes' answers), its exact slow `reference` (what the tests hold the fast path to), its layer
`microbenchmark`, the per-layer facts it reports (`describe`, with `report_facts` naming the ones
the report shows as columns) and its frame-sharded form (`run_sharded`, with the bytes it receives,
`comm_bytes`, and its workspace; `avggt_bench.parallel`). The job, the cost model and the report
call these methods and never name a method. A new route is a subclass registered with
`@ROUTES.register(name, description)`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import torch
from torch import nn

from avggt_bench.attention.base import AttentionContext, DenseMixer
from avggt_bench.attention.cost import GlobalLayerCost, attention_core_macs, linear_macs
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.errors import ConfigError
from avggt_bench.registry import Registry

_ROUTE_RE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(?:\((.*)\))?\s*$")


@dataclass(frozen=True)
class RouteSpec:
    """A parsed route string: its name and keyword parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.params:
            return self.name
        args = ",".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        return f"{self.name}({args})"


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, list | tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def _parse_value(text: str) -> Any:
    text = text.strip()
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if "x" in low and all(part.isdigit() for part in low.split("x")):
        return tuple(int(part) for part in low.split("x"))
    return text


def parse_route(text: str | RouteSpec) -> RouteSpec:
    """Parse `"name"` or `"name(key=value,...)"` into a RouteSpec."""
    if isinstance(text, RouteSpec):
        return text
    match = _ROUTE_RE.match(str(text))
    if not match:
        raise ConfigError(
            f"cannot parse route {text!r}; write a route name optionally followed by "
            f"(key=value,...), e.g. 'global' or 'sga(sigma=9,diag=1)'. Valid names: "
            f"{', '.join(ROUTES.names())}."
        )
    name, args = match.group(1), match.group(2)
    params: dict[str, Any] = {}
    if args and args.strip():
        for item in args.split(","):
            if "=" not in item:
                raise ConfigError(f"route {text!r}: parameter {item!r} must be key=value")
            key, value = item.split("=", 1)
            params[key.strip()] = _parse_value(value)
    return RouteSpec(name, params)


def checked_params(options: type, params: dict[str, Any], route: str) -> dict[str, Any]:
    """A copy of a route's parameters after checking each names a field of its options
    dataclass (a typo such as `sigm=9` must fail, not fall back to a default)."""
    names = {f.name for f in fields(options)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ConfigError(f"unknown {route} option(s) {unknown}; valid: {', '.join(sorted(names))}")
    return dict(params)


class Route:
    """Runs one global block. Subclasses change how tokens are mixed, never the weights."""

    name: str = "route"
    # describe() key -> report column label: the facts the report shows (layer-weighted mean)
    report_facts: ClassVar[dict[str, str]] = {}

    def __init__(self, spec: RouteSpec) -> None:
        self.spec = spec

    def run(
        self, block: nn.Module, x: torch.Tensor, pos: torch.Tensor, layout: TokenLayout
    ) -> torch.Tensor:
        raise NotImplementedError

    def cost(
        self, layout: TokenLayout, dim: int, observed: dict[str, Any] | None = None
    ) -> GlobalLayerCost:
        """MACs of one global layer of width `dim` under this route; `observed` holds the facts of
        the last forward (`describe`) for routes whose cost depends on the input."""
        raise ConfigError(
            f"route {self.spec.name!r} ({type(self).__name__}) has no cost model: define its "
            "cost(layout, dim, observed) method"
        )

    def reference(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext
    ) -> torch.Tensor:
        """The attended values `[B, H, T, d]` by explicit, slow, exact computation (run it in
        float64): what the tests hold the fast path to. Routes that mix no tokens have none."""
        raise NotImplementedError(f"route {self.spec.name!r} has no exact reference")

    def microbenchmark(
        self,
        layout: TokenLayout,
        heads: int,
        head_dim: int,
        device: torch.device,
        dtype: torch.dtype,
        warmup: int = 1,
        repeats: int = 3,
    ) -> dict[str, Any] | None:
        """Timings of this route's layer on seeded random q/k/v, or None when there is nothing
        to time beyond the dense kernel. A `columns` entry ({label: value}) is what the report
        shows."""
        return None

    def describe(self, layout: TokenLayout) -> dict[str, Any]:
        """Per-layer facts for the record (e.g. kept keys); empty for dense routes."""
        return {}

    # How the layer runs frame-sharded (`avggt_bench.parallel`), for the record.
    sharding: ClassVar[str] = "fallback: all-gather every rank's tokens, whole layer on each rank"

    def run_sharded(
        self, block: nn.Module, x: torch.Tensor, pos: torch.Tensor, layout: TokenLayout, shard
    ) -> torch.Tensor:
        """The layer on this rank's frames `x` `[B, S_r*P, C]` of a scene laid out as `layout`,
        talking to the other ranks of `shard` (`avggt_bench.parallel.Shard`).

        The fallback for routes without a sharded form: gather every rank's input tokens, run the
        whole layer, keep this rank's rows. Exact, but neither memory nor compute shrink with R.
        """
        from avggt_bench.parallel.comm import all_gather_blocks

        split, per = shard.split, layout.tokens_per_frame
        batch, _, dim = x.shape
        blocks = x.reshape(batch, split.count, per, dim)
        full = all_gather_blocks(blocks, split.counts, split.rank, 1, shard.log, shard.group)
        full_pos = pos.reshape(batch, split.count, per, 2)[:, :1].expand(-1, split.total, -1, -1)
        out = self.run(block, full.reshape(batch, -1, dim), full_pos.reshape(batch, -1, 2), layout)
        return out[:, split.start * per : split.stop * per]

    def comm_bytes(
        self, layout: TokenLayout, dim: int, split, itemsize: int, batch: int = 1
    ) -> int:
        """Bytes rank `split.rank` receives in `run_sharded` (the convention of
        `avggt_bench.parallel.comm`): the fallback all-gathers every rank's tokens."""
        rows = batch * max(split.counts) * layout.tokens_per_frame
        return (split.world - 1) * rows * dim * itemsize

    def sharded_workspace_bytes(
        self, layout: TokenLayout, dim: int, split, itemsize: int, batch: int = 1
    ) -> int:
        """Estimated bytes `run_sharded` holds beyond the rank's own q/k/v and MLP activations
        (the cluster cost table, `avggt_bench.parallel.cost`): the fallback holds every rank's
        tokens and runs the whole layer, q/k/v and MLP hidden (8 C per token) for all of them."""
        return batch * layout.num_tokens * dim * itemsize * 8

    def report_columns(self, facts: dict[str, Any]) -> dict[str, Any]:
        """The facts the report shows, under their column labels (`report_facts`)."""
        return {label: facts[key] for key, label in self.report_facts.items() if key in facts}

    def __str__(self) -> str:
        return str(self.spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec})"


class LocalRoute(Route):
    """A route whose layer mixes no tokens across frames (per frame, per token): frame-sharded,
    each rank runs it on its own frames and receives nothing."""

    def comm_bytes(
        self, layout: TokenLayout, dim: int, split, itemsize: int, batch: int = 1
    ) -> int:
        return 0

    def sharded_workspace_bytes(
        self, layout: TokenLayout, dim: int, split, itemsize: int, batch: int = 1
    ) -> int:
        return 0


ROUTES: Registry[Callable[..., Route]] = Registry("attention route")


@ROUTES.register("global", "dense softmax attention over all tokens of the scene")
class GlobalRoute(Route):
    name = "global"

    def __init__(self, spec: RouteSpec, policy: str = "default") -> None:
        if spec.params:
            raise ConfigError(f"route 'global' takes no parameters, got {spec}")
        super().__init__(spec)
        self.mixer = DenseMixer(policy)

    def run(
        self, block: nn.Module, x: torch.Tensor, pos: torch.Tensor, layout: TokenLayout
    ) -> torch.Tensor:
        return block(x, pos, layout, self.mixer)

    def cost(
        self, layout: TokenLayout, dim: int, observed: dict[str, Any] | None = None
    ) -> GlobalLayerCost:
        t = layout.num_tokens
        return GlobalLayerCost(str(self.spec), linear_macs(t, dim), attention_core_macs(t, t, dim))

    def reference(self, q, k, v, ctx: AttentionContext) -> torch.Tensor:
        return softmax_attention(q, k, v)

    sharding: ClassVar[str] = "ring attention over K/V blocks, log-sum-exp merge"

    def run_sharded(self, block: nn.Module, x, pos, layout: TokenLayout, shard) -> torch.Tensor:
        from avggt_bench.attention.ring import RingMixer

        return block(x, pos, layout, RingMixer(shard))

    def comm_bytes(
        self, layout: TokenLayout, dim: int, split, itemsize: int, batch: int = 1
    ) -> int:
        """Every other rank's K and V block passes through this rank once."""
        others = split.total - split.count
        return 2 * batch * others * layout.tokens_per_frame * dim * itemsize

    def sharded_workspace_bytes(
        self, layout: TokenLayout, dim: int, split, itemsize: int, batch: int = 1
    ) -> int:
        """The stacked K/V block held and the one in flight, and the fp32 running output and
        block output of the log-sum-exp merge: O(N/R)."""
        per = layout.tokens_per_frame
        blocks = 2 * (split.count + max(split.counts)) * per * dim * itemsize
        return batch * (blocks + 2 * split.count * per * dim * max(itemsize, 4))


def softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Explicit softmax(q kᵀ / sqrt(d)) v over all keys."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-1) @ v


def build_route(spec: str | RouteSpec, policy: str = "default") -> Route:
    """Build the Route for one layer; `policy` is the model's dense SDPA backend policy."""
    spec = parse_route(spec)
    return ROUTES.build(spec.name, spec, policy=policy)


def dense_routes(num_layers: int, policy: str = "default") -> list[Route]:
    return [build_route("global", policy) for _ in range(num_layers)]


def route_table(routes: list[Route], layout: TokenLayout) -> list[dict[str, Any]]:
    """Consecutive layers with the same route, grouped, with each route's per-layer facts."""
    table: list[dict[str, Any]] = []
    for g, route in enumerate(routes):
        name = str(route)
        if table and table[-1]["route"] == name:
            table[-1]["last"] = g
            continue
        facts = route.describe(layout)
        columns = route.report_columns(facts)
        row = {"first": g, "last": g, "route": name, **facts}
        table.append({**row, "columns": columns} if columns else row)
    for row in table:
        first, last = row.pop("first"), row.pop("last")
        row["layers"] = str(first) if first == last else f"{first}-{last}"
    return [{"layers": r.pop("layers"), **r} for r in table]


def layer_benchmarks(
    routes: list[Route],
    layout: TokenLayout,
    heads: int,
    head_dim: int,
    device: torch.device,
    dtype: torch.dtype,
) -> dict[str, dict[str, Any]]:
    """Each distinct route's layer microbenchmark, keyed by route string (routes with nothing to
    time beyond the dense kernel are left out)."""
    out: dict[str, dict[str, Any]] = {}
    for route in routes:
        name = str(route)
        if name in out:
            continue
        result = route.microbenchmark(layout, heads, head_dim, device, dtype)
        if result is not None:
            out[name] = result
    return out


def is_dense(routes: list[Route]) -> bool:
    return all(r.spec.name == "global" for r in routes)
