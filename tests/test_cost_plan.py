"""The planner: counts, prices file, scaling laws and the plan's arithmetic."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from leanrec.cli import app
from leanrec.cost.plan import load_prices, parse_count, plan, predict_index


def _profile(kind="hnsw", n0=100_000):
    return {
        "describe": "minilm onnx int8",
        "encoder": {"threads": 1, "batch_size": 32, "model_bytes": 23 * 2**20,
                    "throughput_short": {"items_per_s": 500.0}, "throughput_long": {"items_per_s": 25.0},
                    "latency_short": {"p50_ms": 4.0, "p99_ms": 9.0}},
        "index_scale": {"name": kind, "n_items": n0, "dim": 384, "build_s": 100.0, "index_bytes": 1700 * n0,
                        "bytes_per_item": 1700.0, "latency": {"p50_ms": 1.0, "p99_ms": 2.0, "mean_ms": 1.1},
                        "threads": 1, "rss_before_bytes": 500 * 2**20, "peak_rss_bytes": 700 * 2**20,
                        "vectors_bytes": n0 * 384 * 4},
    }


@pytest.mark.parametrize("text,value", [("10M", 10_000_000), ("200k", 200_000), ("2000", 2000), ("1.5m", 1_500_000),
                                        ("50_000", 50_000), (300, 300)])
def test_parse_count(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("bad", ["ten", "-5", "nan", "1x"])
def test_parse_count_rejects(bad):
    with pytest.raises(ValueError, match="not a count"):
        parse_count(bad)


def test_packaged_prices_load_and_bad_prices_name_the_field(tmp_path):
    prices = load_prices()
    assert prices["cpu"]["vcpu_hour"] > 0 and prices["source"].endswith("prices.toml")
    bad = tmp_path / "p.toml"
    bad.write_text((__import__("importlib").resources.files("leanrec.cost") / "prices.toml").read_text()
                   .replace("vcpu_hour = 0.0400", 'vcpu_hour = "cheap"'))
    with pytest.raises(ValueError, match=r"\[cpu\] vcpu_hour"):
        load_prices(bad)
    broken = tmp_path / "q.toml"
    broken.write_text("[cpu\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_prices(broken)


@pytest.mark.parametrize("kind,build,latency", [
    ("exact", 10.0, 10.0),
    ("hnsw", 10.0 * math.log(1e6) / math.log(1e5), math.log(1e6) / math.log(1e5)),
    ("ivfpq", 10.0, math.sqrt(10.0)),
])
def test_scaling_laws(kind, build, latency):
    prof = _profile(kind)["index_scale"]
    pred = predict_index(prof, 1_000_000)
    assert pred["index_bytes"] == pytest.approx(1700 * 1_000_000)
    assert pred["build_s"] == pytest.approx(100.0 * build)
    assert pred["p50_ms"] == pytest.approx(1.0 * latency)
    assert pred["p99_ms"] == pytest.approx(2.0 * latency)
    # memory: baseline without vectors + (vectors + growth) per item
    per_item = (200 * 2**20 + 100_000 * 384 * 4) / 100_000
    assert pred["peak_rss_bytes"] == pytest.approx(500 * 2**20 - 100_000 * 384 * 4 + per_item * 1e6)


def test_plan_arithmetic_and_assumptions():
    prices = load_prices()
    p = plan(_profile(), items=10_000_000, users=50_000_000, qps=2000, new_items_per_day=200_000, prices=prices)
    # offline: 10M items at 500 items/s per vCPU = 5,555.6 vCPU-hours, in a 24 h window
    assert p.offline["catalogue_vcpu_hours"] == pytest.approx(10_000_000 / 500 / 3600)
    assert p.offline["vcpus_in_window"] == math.ceil(10_000_000 / 500 / 3600 / 24)
    assert p.offline["gpu"] is False  # no measured GPU throughput in the packaged prices
    pred = p.online["predicted_index"]
    load = 2000 * pred["mean_ms"] / 1e3 + 200_000 / 86400 * 4.0 / 1e3
    replicas = prices["planning"]["replicas"]
    assert p.online["vcpus"] == replicas * math.ceil(load / prices["planning"]["target_utilisation"] / replicas)
    # user profiles alone: 50M × 384 × 4 B per replica
    assert p.online["ram_gb_per_replica"] > 50_000_000 * 384 * 4 / 2**30
    c = p.cost
    assert c["total_month"] == pytest.approx(c["offline_month"] + c["online_month"] + c["disk_month"])
    text = "\n".join(p.assumptions)
    for needle in ("items/s", "window", "GPU", "user profiles", "prices from", "∝ N·log N", "QPS"):
        assert needle in text


def test_plan_uses_gpu_only_when_measured_and_cheaper(tmp_path):
    prices = load_prices()
    prices["gpu"]["items_per_s"] = 50_000.0
    p = plan(_profile(), items=10_000_000, users=1000, qps=10, new_items_per_day=0, prices=prices)
    assert p.offline["gpu"] is True and p.offline["gpu_hours_per_month"] == pytest.approx(10_000_000 / 50_000 / 3600)


def test_plan_needs_an_index_profile():
    prof = _profile()
    del prof["index_scale"]
    with pytest.raises(ValueError, match="index-items"):
        plan(prof, items=10, users=10, qps=1, new_items_per_day=0)


def test_plan_cli(tmp_path):
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(_profile()))
    out = tmp_path / "plan.json"
    res = CliRunner().invoke(app, ["cost", "plan", "--items", "10M", "--users", "50M", "--qps", "2000",
                                   "--new-items-per-day", "200k", "--profile", str(path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "assumptions" in res.output and "total" in res.output
    assert json.loads(out.read_text())["target"]["items"] == 10_000_000
    old = CliRunner().invoke(app, ["plan", "--items", "10M", "--users", "50M", "--qps", "2000",  # the old spelling
                                   "--new-items-per-day", "200k", "--profile", str(path)])
    assert old.exit_code == 0 and old.stderr.startswith("`leanrec plan` is now `leanrec cost plan`")
    assert old.stdout == res.stdout
    res = CliRunner().invoke(app, ["cost", "plan", "--items", "lots", "--users", "1", "--qps", "1", "--profile", str(path)])
    assert res.exit_code != 0 and "not a count" in res.output
    res = CliRunner().invoke(app, ["cost", "plan", "--items", "1", "--users", "1", "--qps", "1",
                                   "--profile", str(tmp_path / "missing.json")], env={"COLUMNS": "400"})
    assert res.exit_code != 0 and "no such file" in res.output


def test_build_time_exponent_is_fitted_from_the_calibration_point():
    prof = _profile("hnsw")["index_scale"]
    prof["calibration"] = {"n_items": 10_000, "build_s": 100.0 / 10 ** 1.2, "latency": {}, "index_bytes": 0,
                           "recall@10": 1.0}
    pred = predict_index(prof, 1_000_000)
    assert pred["build_s"] == pytest.approx(100.0 * 10 ** 1.2)
    assert "N^1.20" in pred["laws"]["build_s"]
