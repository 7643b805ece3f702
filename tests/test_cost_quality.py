"""Quality through an index equals the evaluation protocol's, and profiling works end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leanrec.cost.config import PipelineConfig
from leanrec.cost.profile import profile_encoder, profile_index, profile_quality
from leanrec.cost.quality import rank_quality
from leanrec.data.split import make_split
from leanrec.eval.evaluate import evaluate
from leanrec.models import ContentRecommender
from leanrec.vectors import ExactIndex, make_index


@pytest.mark.parametrize("protocol", ["warm", "cold"])
def test_exact_fp32_quality_equals_evaluate(synthetic, protocol):
    """The ladder's quality path reproduces evaluate()'s NDCG@10 and Recall@10 exactly."""
    split = make_split(synthetic, protocol)
    model = ContentRecommender(encoder="tfidf", half_life=8).fit(split.train_valid)
    ref = evaluate(model, split.test, split.candidates).metrics
    q = profile_quality(PipelineConfig("t", backend="tfidf"), synthetic, splits={protocol: split})[protocol]
    assert q["ndcg@10"] == pytest.approx(ref["ndcg@10"], abs=1e-12)
    assert q["recall@10"] == pytest.approx(ref["recall@10"], abs=1e-12)
    assert q["index"]["recall@10"] == 1.0


def test_compressed_rows_report_bytes_and_keep_quality(synthetic):
    base = profile_quality(PipelineConfig("t", backend="tfidf"), synthetic)
    int8 = profile_quality(PipelineConfig("t", backend="tfidf", vectors="int8"), synthetic)
    assert int8["vector_bytes_per_item"] == pytest.approx(base["warm"]["index"]["bytes_per_item"] / 4, rel=0.01)
    assert int8["warm"]["ndcg@10"] >= 0.9 * base["warm"]["ndcg@10"]
    with pytest.raises(ValueError, match="goes with the exact index"):
        profile_quality(PipelineConfig("t", backend="tfidf", vectors="int8", index="hnsw"), synthetic)


def test_rank_quality_counts_hits_in_the_top_ten():
    positions = np.array([[5, 3, 1], [7, 8, 9], [0, 1, 2]])
    q = rank_quality("warm", positions, np.array([3, 4, 0]), k=3)
    assert q.recall10 == pytest.approx(2 / 3)
    assert q.ndcg10 == pytest.approx((1 / np.log2(3) + 1.0) / 3)


def test_profile_index_measures_build_latency_and_recall():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:40] + 0.1 * rng.normal(size=(40, 16)).astype(np.float32)
    prof = profile_index(make_index("hnsw"), vectors, queries, latency_n=20)
    assert prof["n_items"] == 500 and prof["index_bytes"] > 500 * 16 * 4
    assert prof["latency"]["p99_ms"] >= prof["latency"]["p50_ms"] > 0
    assert 0.9 <= prof["recall@10"] <= 1.0
    exact = profile_index(ExactIndex(), vectors, queries, latency_n=20)
    assert exact["recall@10"] == 1.0


def test_profile_encoder_tfidf(synthetic):
    texts = list(synthetic.items.texts)
    prof = profile_encoder(PipelineConfig("t", backend="tfidf"), texts[:40], texts[:8], repeats=2, latency_n=10)
    assert prof["throughput_short"]["items_per_s"] > 0 and len(prof["throughput_short"]["samples_s"]) == 2
    assert prof["latency_short"]["n"] == 10 and prof["model_bytes"] > 0
    assert "roofline" not in prof  # no transformer, no FLOP count
    json.dumps(prof)  # JSON-ready
