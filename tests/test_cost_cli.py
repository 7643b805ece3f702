"""The cost commands end to end, through real worker processes, on ML-100K and generated products.

Uses cheap rungs (TF-IDF, the static encoder over a 1-layer distillation would still need
minutes, so only TF-IDF) and --quick sizes: these tests check the plumbing (subprocess
workers, JSON, reports, planner input), not the numbers, which live in benchmarks/.
"""

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ml100k]


def _leanrec(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "leanrec.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=1200)


def test_bench_writes_every_report_file(tmp_path):
    ladder = tmp_path / "ladder.toml"
    ladder.write_text('[[config]]\nname = "tfidf"\nbackend = "tfidf"\n\n'
                      '[[config]]\nname = "tfidf+int8"\nbackend = "tfidf"\nvectors = "int8"\n\n'
                      '[[config]]\nname = "tfidf+hnsw"\nbackend = "tfidf"\nindex = "hnsw"\n')
    res = _leanrec("cost", "bench", "--ladder", str(ladder), "--quick", "--out", str(tmp_path / "out"))
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    by = {r["name"]: r for r in report["summary"]}
    assert set(by) == {"tfidf", "tfidf+int8", "tfidf+hnsw"} and not any(r["error"] for r in by.values())
    assert by["tfidf+int8"]["bytes_per_item"] < by["tfidf"]["bytes_per_item"] / 3.9
    assert by["tfidf+int8"]["warm_vs_fp32"] > 0.9 and by["tfidf"]["warm_vs_fp32"] == 1.0
    assert 0 < by["tfidf+hnsw"]["recall@10"] <= 1.0
    for name in ("report.html", "report.md", "pareto.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert "cost ladder" in res.stdout  # the progress bar's label


def test_cost_profile_feeds_the_planner(tmp_path):
    prof = tmp_path / "profile.json"
    res = _leanrec("cost", "profile", "--backend", "tfidf", "--precision", "fp32", "--index", "hnsw", "--index-items", "3000",
                   "--no-quality", "--out", str(prof))
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(prof.read_text())
    assert data["encoder"]["throughput_short"]["items_per_s"] > 0
    scale = data["index_scale"]
    assert scale["n_items"] == 3000 and scale["recall@10"] > 0.5 and scale["peak_rss_bytes"] > 0
    res = _leanrec("cost", "plan", "--items", "1M", "--users", "100k", "--qps", "100", "--profile", str(prof))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "assumptions" in res.stdout and "predicted index at 1,000,000 items" in res.stdout
