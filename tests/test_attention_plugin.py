"""A route defined outside the package runs through every consumer of the attention seam.

The route below lives in this test module, which registers it on import as an out-of-package
plugin would; attention configs name the module under `plugins`. With no edit anywhere else it runs
through `build_model(..., attention=...)`, the cost model, the layer microbenchmark, the Hydra job's
record and the report.
"""

import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir

from avggt_bench import report
from avggt_bench.attention.base import AttentionContext
from avggt_bench.attention.config import resolve_routes
from avggt_bench.attention.cost import GlobalLayerCost, attention_core_macs, linear_macs
from avggt_bench.attention.kernels import sdpa
from avggt_bench.attention.layout import TokenLayout
from avggt_bench.attention.routes import ROUTES, Route, build_route, layer_benchmarks
from avggt_bench.errors import ConfigError
from avggt_bench.flops import model_cost
from avggt_bench.models import build_model
from avggt_bench.paths import config_dir
from avggt_bench.report.tables import summary_table
from avggt_bench.run import run_job
from avggt_bench.timing import random_qkv, time_repeats

PLUGIN = __name__  # the module an attention config names under `plugins`
ROUTE = "test_strided_keys"
FACT = "strided keys: key share"
BENCH = "strided keys: layer / dense"


class StridedKeysMixer:
    """Every query attends to every `step`-th key of the scene (in token order)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, q, k, v, ctx: AttentionContext) -> torch.Tensor:
        return sdpa(q, k[:, :, :: self.step], v[:, :, :: self.step])


class StridedKeysRoute(Route):
    """A toy sparse route: keys and values subsampled with a fixed token stride."""

    name = ROUTE
    report_facts = {"key_share": FACT}  # noqa: RUF012

    def __init__(self, spec, policy: str = "default") -> None:
        super().__init__(spec)
        self.step = int(spec.params.get("step", 2))
        self.mixer = StridedKeysMixer(self.step)

    def run(self, block, x, pos, layout: TokenLayout) -> torch.Tensor:
        return block(x, pos, layout, self.mixer)

    def keys(self, layout: TokenLayout) -> int:
        return math.ceil(layout.num_tokens / self.step)

    def describe(self, layout: TokenLayout) -> dict:
        return {"keys": self.keys(layout), "key_share": self.keys(layout) / layout.num_tokens}

    def cost(self, layout: TokenLayout, dim: int, observed=None) -> GlobalLayerCost:
        t = layout.num_tokens
        attn = attention_core_macs(t, self.keys(layout), dim)
        return GlobalLayerCost(str(self.spec), linear_macs(t, dim), attn)

    def reference(self, q, k, v, ctx: AttentionContext) -> torch.Tensor:
        out = torch.empty_like(q)
        keys = [j for j in range(k.shape[2]) if j % self.step == 0]  # explicit key list
        for i in range(q.shape[2]):
            scores = q[:, :, i : i + 1] @ k[:, :, keys].transpose(-1, -2) / q.shape[-1] ** 0.5
            out[:, :, i : i + 1] = torch.softmax(scores, -1) @ v[:, :, keys]
        return out

    def microbenchmark(self, layout, heads, head_dim, device, dtype, warmup=1, repeats=3):
        q, k, v = random_qkv(layout.num_tokens, heads, head_dim, device, dtype)
        ctx = AttentionContext(layout)
        with torch.inference_mode():
            _, strided, _ = time_repeats(lambda: self.mixer(q, k, v, ctx), device, warmup, repeats)
            _, dense, _ = time_repeats(lambda: sdpa(q, k, v), device, warmup, repeats)
        ratio = strided.median_s / dense.median_s
        return {"strided_s": strided.median_s, "dense_s": dense.median_s, "columns": {BENCH: ratio}}


if ROUTE not in ROUTES:
    ROUTES.add(ROUTE, StridedKeysRoute, "test plugin: every step-th key of the scene")


def attention(step: int) -> dict:
    route = f"{ROUTE}(step={step})"
    return {
        "method": "dense",
        "plugins": [PLUGIN],
        "overrides": [{"layers": "2-23", "route": route}],
    }


def test_the_fast_path_matches_its_exact_reference():
    layout = TokenLayout(3, (2, 3), 5, reference_frame=True)
    gen = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(1, 2, layout.num_tokens, 8, generator=gen, dtype=torch.float64) for _ in "qkv"
    )
    route = build_route(f"{ROUTE}(step=3)")
    ctx = AttentionContext(layout)
    torch.testing.assert_close(route.mixer(q, k, v, ctx), route.reference(q, k, v, ctx))


def test_build_model_runs_the_plugin_route(vggt_small):
    x = torch.rand(1, 3, 3, 28, 42, generator=torch.Generator().manual_seed(1))
    identity = build_model("vggt_small", attention=attention(1))
    strided = build_model("vggt_small", attention=attention(2))
    assert strided.route_strings[:2] == ["global", "global"]
    assert strided.route_strings[2:] == [f"{ROUTE}(step=2)"] * 22
    with torch.inference_mode():
        dense, same, other = vggt_small(x), identity(x), strided(x)
    assert torch.equal(same["depth"], dense["depth"])  # step 1 keeps every key: the dense model
    assert not torch.allclose(other["depth"], dense["depth"])


def test_cost_model_and_microbenchmark_ask_the_route():
    model = build_model("vggt_small", attention=attention(2))
    dense = build_model("vggt_small")
    frames, hw = 3, (28, 42)
    cost = model_cost(model, frames, hw).as_dict()
    layout = TokenLayout(frames, (2, 3), 5, True)
    t, dim = layout.num_tokens, model.arch.embed_dim
    assert cost["global_layers"][5]["route"] == f"{ROUTE}(step=2)"
    assert cost["global_layers"][5]["attention"] == 2 * t * math.ceil(t / 2) * dim  # by hand
    assert cost["macs"] < model_cost(dense, frames, hw).as_dict()["macs"]
    attn = model.global_block(0).attn
    benches = layer_benchmarks(
        model.routes, layout, attn.num_heads, attn.head_dim, torch.device("cpu"), torch.float32
    )
    assert list(benches) == [f"{ROUTE}(step=2)"]  # the global layers have nothing to time
    assert benches[f"{ROUTE}(step=2)"]["columns"][BENCH] > 0


def test_the_job_records_it_and_the_report_shows_its_columns(tmp_path):
    overrides = [
        "model=vggt_small",
        "model.preprocess.size=70",
        "timing.warmup=0",
        "timing.repeats=2",
        "dataset.width=70",
        "dataset.height=56",
        "num_views=3",
        "fidelity=false",
        f"paths.root={tmp_path}",
        f"record.dir={tmp_path}/records",
        f"+attention.plugins=[{PLUGIN}]",
        f"attention.overrides=[{{layers: '2-23', route: '{ROUTE}(step=2)'}}]",
    ]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    rec = run_job(cfg)
    assert rec.status == "ok", rec.message
    [saved] = [json.loads(p.read_text()) for p in (tmp_path / "records").rglob("*.json")]
    assert list(saved["timings"]["layer_benchmarks"]) == [f"{ROUTE}(step=2)"]
    layers = saved["model"]["route_layers"]
    assert [r["layers"] for r in layers] == ["0-1", "2-23"]
    assert layers[1]["columns"] == {FACT: layers[1]["key_share"]}
    df, _ = report.load_table([tmp_path / "records"])
    assert df.loc[0, f"route: {FACT}"] == pytest.approx(layers[1]["key_share"])
    summary = summary_table(df)
    assert {FACT, BENCH} <= set(summary.columns)


def test_plugins_import_a_module_by_name(tmp_path, monkeypatch):
    (tmp_path / "plugin_by_name_for_avggt_test.py").write_text(
        "from avggt_bench.attention.config import METHODS\n"
        "METHODS.add('test_plugin_method', lambda cfg, family, n: ['frame'] * n)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = {"method": "test_plugin_method", "plugins": ["plugin_by_name_for_avggt_test"]}
    assert resolve_routes(cfg, "vggt", 24) == ["frame"] * 24
    with pytest.raises(ConfigError, match="plugins names 'no_such_module_xyz'"):
        resolve_routes({"method": "dense", "plugins": ["no_such_module_xyz"]}, "vggt", 24)
