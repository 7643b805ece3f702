"""Ladder configs, the Pareto front and the report files of a bench run."""

from __future__ import annotations

import json

import pytest

from leanrec.cost.bench import summarise
from leanrec.cost.config import PipelineConfig, default_ladder, load_ladder
from leanrec.cost.report import markdown_table, pareto_front, write_report


def test_pareto_front_keeps_only_non_dominated_points():
    pts = [(100, 1.0), (300, 0.99), (200, 0.9), (1000, 0.5), (1000, 0.4)]
    assert pareto_front(pts, higher_x_better=True) == [0, 1, 3]
    # lower x better (bytes): (64, .98) dominates (128, .97); (1536, 1.0) is the best quality
    pts = [(1536, 1.0), (128, 0.97), (64, 0.98), (48, 0.80)]
    assert pareto_front(pts, higher_x_better=False) == [3, 2, 0]


def test_config_validation_names_the_field(tmp_path):
    with pytest.raises(ValueError, match="'backend'"):
        PipelineConfig("x", backend="gpu")
    with pytest.raises(ValueError, match="'threads'"):
        PipelineConfig("x", threads=0)
    path = tmp_path / "ladder.toml"
    path.write_text('[[config]]\nname = "a"\nbackend = "tfidf"\n\n[[config]]\nname = "b"\nbogus = 1\n')
    with pytest.raises(ValueError, match=r"#2: unknown field\(s\) \['bogus'\]"):
        load_ladder(path)
    path.write_text('[[config]]\nname = "a"\nbackend = "tfidf"\nvectors = "int8"\n')
    (cfg,) = load_ladder(path)
    assert cfg.vectors == "int8" and PipelineConfig.from_dict(cfg.as_dict()) == cfg


def test_default_ladder_starts_with_the_reference_and_has_unique_names():
    ladder = default_ladder(big_model="/models/big")
    assert ladder[0].name == "torch-fp32"
    assert len({c.name for c in ladder}) == len(ladder)
    assert any(c.encoder == "/models/big" for c in ladder)


def _row(name, backend, precision, vectors="fp32", index="exact", short=100.0, warm=0.03, cold=0.06, bpi=1536):
    return {"name": name, "config": PipelineConfig(name, backend=backend, precision=precision, vectors=vectors,
                                                   index=index).as_dict(),
            "encoder": {"throughput_short": {"items_per_s": short}, "throughput_long": {"items_per_s": short / 20},
                        "latency_short": {"p50_ms": 5.0, "p99_ms": 9.0}, "load_s": 1.0, "model_bytes": 2**20,
                        "dim": 384},
            "quality": {"warm": {"ndcg@10": warm, "index": {"build_s": 0.01, "latency": {"p50_ms": 0.1, "p99_ms": 0.2},
                                                            "qps_single": 9000, "recall@10": 1.0}},
                        "cold": {"ndcg@10": cold}, "vector_bytes_per_item": bpi},
            "peak_rss_bytes": 300 * 2**20, "wall_s": 10}


def test_summary_ratios_and_report_files(tmp_path):
    rows = [_row("torch-fp32", "torch", "fp32"), _row("onnx-int8", "onnx", "int8", short=330, warm=0.0297),
            _row("onnx-int8+pq64", "onnx", "int8", vectors="pq64", short=330, warm=0.029, bpi=64),
            {"name": "broken", "error": "RuntimeError: boom"}]
    summary = summarise(rows)
    by = {r["name"]: r for r in summary}
    assert by["onnx-int8"]["speedup_short"] == pytest.approx(3.3)
    assert by["onnx-int8"]["warm_vs_ref"] == pytest.approx(0.99)
    assert by["onnx-int8+pq64"]["warm_vs_fp32"] == pytest.approx(0.029 / 0.0297)
    assert by["broken"]["error"]
    md = markdown_table(summary)
    assert md.count("\n") == len(summary) + 1 and "error: RuntimeError" in md
    paths = write_report({"rows": rows, "summary": summary, "machine": {"cpu_model": "test"}, "wall_s": 1}, tmp_path)
    assert json.loads(paths["json"].read_text())["summary"][0]["name"] == "torch-fp32"
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["html"].read_text()
    assert "data:image/png;base64," in page and "plotly" in page.lower() and "onnx-int8+pq64" in page
