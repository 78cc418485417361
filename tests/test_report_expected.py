"""Expected results: the committed mapping resolves against the presets and the published table,
and a record of a mapped preset gets the verdict its number deserves."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf
from test_report import record, scene, write

from avggt_bench import report
from avggt_bench.errors import ConfigError
from avggt_bench.paths import REPO_DIR
from avggt_bench.report import expected, expected_map
from avggt_bench.report.expected import BEYOND, NO_RECORD, NO_VALUE, NOT_MEANINGFUL, WITHIN
from avggt_bench.report.expected_map import Expectation, load_expectations


@pytest.fixture(scope="module")
def expectations() -> list[Expectation]:
    return load_expectations()


def protocol_record(
    preset: str,
    metrics: dict[str, float],
    *,
    attention: str = "dense",
    model: str = "vggt",
    weights: str = "checkpoint",
    status: str = "ok",
    finished: str = "2026-12-01T10:00:00+00:00",
    overrides: tuple[str, ...] = (),
) -> dict:
    """A protocol job's record (test_report's layout) for `preset`, with these aggregated
    accuracy metrics; the config hash covers the preset so records of two presets never
    supersede each other."""
    rec = record(attention, views=None, scenes=[scene("a", 1.0)], model=model, status=status)
    rec["config"]["dataset"]["name"] = preset
    rec["config"]["extra"] = list(overrides)
    rec["config_hash"] = hashlib.sha256(
        json.dumps(rec["config"], sort_keys=True).encode()
    ).hexdigest()
    rec["run_id"] = f"{model}-{attention}-{preset}-{rec['config_hash'][:10]}"
    rec["job"]["dataset"] = preset
    rec["job"]["overrides"] += list(overrides)
    rec["finished_at"] = finished
    rec["model"].update(family=model.split("_")[0], weights=weights)
    meaningful = weights == "checkpoint"
    rec["metrics"] = {
        "accuracy": {
            "rule": "pooled_pairs",
            "n_scenes": 1,
            "n_ok": 1,
            "metrics": metrics,
            "meaningful": meaningful,
            "note": "" if meaningful else "random weights: accuracy is not meaningful",
        }
    }
    return rec


def find(exps: list[Expectation], preset: str, model: str, metric: str) -> Expectation:
    (hit,) = [
        e for e in exps if (e.preset, e.published_model, e.our_metric) == (preset, model, metric)
    ]
    return hit


def compare(folder: Path, exps: list[Expectation]):
    df, _ = report.load_table([folder])
    return expected.comparison(df, exps).set_index(["preset", "published model", "metric"])


def test_the_committed_mapping_resolves(expectations):
    presets = expected_map.protocol_presets()
    assert len(expectations) >= 40
    assert {"seven_scenes_dense_800", "re10k_vggt", "scannet_fastvggt_1000"} <= {
        e.preset for e in expectations
    }
    for e in expectations:
        preset = presets[e.preset]
        assert (REPO_DIR / "conf" / "dataset" / f"{e.preset}.yaml").is_file()
        assert (REPO_DIR / "conf" / "attention" / f"{e.variant}.yaml").is_file(), e
        # units: ours (by key and the preset's report unit) is the published one
        assert expected_map.metric_unit(e.our_metric, preset.get("report_unit", "m")) == e.unit, e
        assert e.tolerance > 0 and e.reason
        # a preset with a fixed frame count takes the published one
        n = (preset.get("sampling") or {}).get("n")
        if n is not None and e.frames is not None:
            assert n == e.frames, e
    # pose AUC is in percent on both sides; nothing published as a fraction slipped in
    assert {e.unit for e in expectations if e.our_metric.startswith("auc@")} == {"%"}


def test_every_published_accuracy_number_is_mapped_or_listed(expectations):
    missing = expected_map.unmapped(expectations)
    numeric = pd.to_numeric(missing["value"], errors="coerce").notna()
    assert (missing.loc[numeric, "why"] == "no preset").all()
    assert (missing.loc[~numeric, "why"] == "published value is OOM, not a number").all()
    mapped = {
        (e.source, e.table, e.dataset, e.num_frames, e.published_model, e.metric)
        for e in expectations
    }
    listed = {tuple(r) for r in missing[list(expected_map.ROW_KEY)].itertuples(index=False)}
    assert not mapped & listed
    # the Tanks and Temples pose numbers have no preset; the dense 7-Scenes ones do
    assert any(t[2] == "Tanks and Temples" for t in listed)
    dense = ("VGGT", "π³", "AVGGT(9)", "Aπ³(9)")
    assert not any(t[2] == "7-Scenes (extended)" and t[4] in dense for t in listed)


def test_a_record_inside_and_outside_the_tolerance(tmp_path, expectations):
    vggt = find(expectations, "seven_scenes_dense_800", "VGGT", "auc@30")
    pi3 = find(expectations, "seven_scenes_dense_800", "π³", "auc@30")
    inside = vggt.value + 0.5 * vggt.tolerance
    outside = pi3.value - 1.5 * pi3.tolerance
    folder = write(
        tmp_path / "r",
        protocol_record("seven_scenes_dense_800", {"auc@30": inside, "auc@5": 0.0}),
        protocol_record("seven_scenes_dense_800", {"auc@30": outside}, model="pi3"),
    )
    table = compare(folder, expectations)
    row = table.loc[("seven_scenes_dense_800", "VGGT", "auc@30")]
    assert row["verdict"] == WITHIN
    assert row["ours"] == pytest.approx(inside)
    assert row["difference"] == pytest.approx(0.5 * vggt.tolerance)
    assert table.loc[("seven_scenes_dense_800", "π³", "auc@30"), "verdict"] == BEYOND
    assert table.loc[("seven_scenes_dense_800", "VGGT", "auc@5"), "verdict"] == BEYOND
    # the variants without a record say so
    assert table.loc[("seven_scenes_dense_800", "AVGGT(9)", "auc@30"), "verdict"] == NO_RECORD


def test_random_weights_show_the_number_but_no_verdict(tmp_path, expectations):
    exp = find(expectations, "tum_dynamics_cut3r", "VGGT", "ate")
    folder = write(
        tmp_path / "r", protocol_record("tum_dynamics_cut3r", {"ate": exp.value}, weights="random")
    )
    row = compare(folder, expectations).loc[("tum_dynamics_cut3r", "VGGT", "ate")]
    assert row["verdict"] == NOT_MEANINGFUL
    assert row["ours"] == pytest.approx(exp.value)


def test_only_the_newest_record_of_the_same_preset_and_variant_counts(tmp_path, expectations):
    exp = find(expectations, "scannet_fastvggt_1000", "FastVGGT", "cd")
    good, bad = exp.value, exp.value + 10 * exp.tolerance
    folder = write(
        tmp_path / "r",
        protocol_record("scannet_fastvggt_1000", {"cd": bad}, attention="fastvggt",
                        finished="2026-12-01T09:00:00+00:00", overrides=("attention.seed=1",)),
        protocol_record("scannet_fastvggt_1000", {"cd": good}, attention="fastvggt",
                        status="partial"),
        # another preset, another attention preset, a sub-key override: none of them is this row
        protocol_record("scannet_fastvggt_500", {"cd": bad}, attention="fastvggt",
                        finished="2026-12-02T09:00:00+00:00"),
        protocol_record("scannet_fastvggt_1000", {"cd": bad}, attention="fastvggt_clean",
                        finished="2026-12-02T09:00:00+00:00"),
        protocol_record("scannet_fastvggt_1000", {"cd": bad}, attention="fastvggt",
                        finished="2026-12-03T09:00:00+00:00", overrides=("dataset.max_scenes=2",)),
    )  # fmt: skip
    table = compare(folder, expectations)
    row = table.loc[("scannet_fastvggt_1000", "FastVGGT", "cd")]
    assert row["verdict"] == WITHIN and row["ours"] == pytest.approx(good)
    assert "status partial" in row["notes"]
    assert table.loc[("scannet_fastvggt_500", "FastVGGT", "cd")]["verdict"].tolist() == [BEYOND] * 2
    assert table.loc[("scannet_fastvggt_1000", "VGGT*", "cd"), "verdict"] == NO_RECORD


def test_no_record_at_all(expectations):
    table = expected.comparison(pd.DataFrame(), expectations)
    assert len(table) == len(expectations)
    assert (table["verdict"] == NO_RECORD).all() and table["ours"].isna().all()


def edited(tmp_path: Path, old: str, new: str) -> Path:
    text = expected_map.EXPECTED_FILE.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "expected_results.csv"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("\nseven_scenes_dense_800,", "\nseven_scenes_dense_8000,",
         r"expected_results.csv line \d+: unknown protocol preset 'seven_scenes_dense_8000'.*"
         r"Valid: .*seven_scenes_dense_800"),
        ("(extended),800,VGGT,auc@30", "(extended),800,VGGT,auc@31",
         r"line \d+: no row of published_results.csv has .*metric='auc@31'"),
        (",auc@30,auc@30,2.0,", ",auc@30,auc@45,2.0,", r"our_metric 'auc@45' is not computed"),
        (",chamfer,cd,0.015,", ",chamfer,nc,0.015,", r"our_metric 'nc' is not computed"),
        (",ate,ate,0.002,", ",ate,ate,-1,", r"tolerance '-1' is not a number >= 0"),
    ],
)  # fmt: skip
def test_a_bad_mapping_stops_with_the_line_named(tmp_path, old, new, message):
    with pytest.raises(ConfigError, match=message):
        load_expectations(edited(tmp_path, old, new))


def test_a_unit_mismatch_is_refused(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(REPO_DIR / "conf" / "dataset", conf / "dataset")
    path = conf / "dataset" / "tum_dynamics_cut3r.yaml"
    cfg = OmegaConf.load(path)
    cfg.report_unit = "mm"
    OmegaConf.save(cfg, path)
    with pytest.raises(ConfigError, match=r"our 'ate' is in mm .* published 'ate' in m"):
        load_expectations(conf=conf)


def test_the_report_writes_and_links_the_table(tmp_path, expectations):
    exp = find(expectations, "re10k_vggt", "AVGGT(9)", "auc@30")
    folder = write(
        tmp_path / "r",
        protocol_record("re10k_vggt", {"auc@30": exp.value + 0.1}, attention="avggt_9"),
    )
    df, notes = report.load_table([folder])
    paths = report.write_report(df, notes, tmp_path / "out")
    text = paths["expected_md"].read_text()
    assert "|ours − published| ≤ tolerance" in text and "## re10k_vggt" in text
    assert "## Published accuracy numbers without a preset" in text
    assert "[expected_results.md](expected_results.md)" in paths["markdown"].read_text()
    table = expected.comparison(df, expectations)
    hit = table[(table["preset"] == "re10k_vggt") & (table["variant"] == "avggt_9")]
    assert (hit["verdict"] == WITHIN).sum() == 1 and (hit["verdict"] == NO_VALUE).sum() == 2
    written = paths["expected_csv"].read_text()
    assert written.count(WITHIN) == 1 and "re10k_vggt" in written
