"""One contract, checked against every codec in leanrec.vectors, and the indexes' own tests
(the index contract, over every index, is tests/test_index_contract.py, on this file's data).

Data: 2,000 unit-norm items in 64 dims drawn around 20 Gaussian cluster centres (plus a
16-dim low-rank component, as real embeddings have), queries = means of 5 random items
(not unit norm, like user vectors). Fixed seed; faiss on one thread so that builds are
deterministic and the file stays fast.

Per-codec tolerances and per-index recall floors are stated in the tables below, with
the value measured on this data when they were chosen, so a regression shows up as a
drop below a floor with some margin for platform differences (BLAS, faiss builds).
"""

from __future__ import annotations

import numpy as np
import pytest

from leanrec.vectors import (
    CODEC_SPECS,
    INDEX_SPECS,
    ExactIndex,
    Int8Codec,
    NotFittedError,
    PQCodec,
    VectorCodec,
    load_codec,
    make_codec,
    make_index,
    recall_at_k,
)

faiss = pytest.importorskip("faiss")

N, D, NQ, K, SEED = 2000, 64, 100, 10, 7


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _make_data(seed: int = SEED):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, D))
    labels = rng.integers(0, 20, N)
    basis = rng.standard_normal((16, D)) / 4
    x = centres[labels] + 0.5 * rng.standard_normal((N, 16)) @ basis + 0.3 * rng.standard_normal((N, D))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q = x[rng.integers(0, N, (NQ, 5))].mean(axis=1).astype(np.float32)
    exclude = [rng.choice(N, size=int(rng.integers(0, 40)), replace=False) for _ in range(NQ)]
    return x, q, exclude


@pytest.fixture(scope="module")
def data():
    x, q, exclude = _make_data()
    ref = q @ x.T
    top = np.argsort(-ref, axis=1, kind="stable")[:, :K]
    masked = ref.copy()
    for i, e in enumerate(exclude):
        masked[i, e] = -np.inf
    top_excl = np.argsort(-masked, axis=1, kind="stable")[:, :K]
    return {"x": x, "q": q, "exclude": exclude, "ref": ref, "top": top, "top_excl": top_excl}


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-row Spearman correlation (no ties in float scores)."""
    ra = np.argsort(np.argsort(a, axis=1), axis=1).astype(np.float64)
    rb = np.argsort(np.argsort(b, axis=1), axis=1).astype(np.float64)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    return float(np.mean((ra * rb).sum(1) / np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))))


# =====================================================================================
# Codecs
# =====================================================================================

# spec: (max |score - fp32 score| or None, min rank correlation, min top-10 recall).
# Measured on this data when chosen (max err / Spearman rho / recall@10):
#   fp32 0 / 1 / 1;  fp16 7e-5 / 1.0 / 1.0;  int8 1.8e-3 / 1.0 / 0.992;
#   int8-quantile 0.016 / 1.0 / 0.989;  binary 0.21 / 0.881 / 0.323;
#   pq16 0.066 / 0.987 / 0.644;  pq32x4 0.091 / 0.976 / 0.553;  pca64 3e-7 / 1 / 1;
#   pca32-int8 0.033 / 0.998 / 0.873;  pca32-fp16 0.032 / 0.998 / 0.871;
#   trunc64 0 / 1 / 1;  trunc32-renorm 0.26 / 0.809 / 0.324.
# pca64 / trunc64 keep every dimension, so they must be exact up to rounding.
CODEC_CASES = {
    "fp32": (1e-6, 1.0, 1.0),
    "fp16": (1e-3, 0.9999, 0.98),
    "int8": (0.01, 0.999, 0.95),
    "int8-quantile": (0.05, 0.999, 0.95),
    "binary": (None, 0.85, 0.25),
    "pq16": (None, 0.97, 0.55),
    "pq32x4": (None, 0.95, 0.45),
    "pca64": (1e-4, 0.9999, 0.99),
    "pca32-int8": (None, 0.99, 0.8),
    "pca32-fp16": (None, 0.99, 0.8),
    "trunc64": (1e-5, 0.9999, 0.99),
    "trunc32-renorm": (None, 0.75, 0.25),
}


@pytest.fixture(scope="module")
def fitted(data):
    """Each codec fitted once on the module's items: spec -> (codec, codes)."""
    out = {}
    for spec in CODEC_CASES:
        codec = make_codec(spec).fit(data["x"])
        out[spec] = (codec, codec.encode(data["x"]))
    return out


@pytest.mark.parametrize("spec", CODEC_CASES)
def test_codec_shapes_and_bytes(spec, data, fitted):
    codec, codes = fitted[spec]
    assert isinstance(codec, VectorCodec)
    assert codes.ndim == 2 and len(codes) == N and codes.dtype == codec.code_dtype
    assert codec.bytes_per_item == codes.nbytes / N
    assert codec.dim_in == D and 1 <= codec.dim_out <= D
    decoded = codec.decode(codes)
    assert decoded.shape == (N, codec.dim_out) and decoded.dtype == np.float32
    tq = codec.transform_queries(data["q"])
    assert tq.shape == (NQ, codec.dim_out) and tq.dtype == np.float32
    scores = codec.scores(data["q"], codes)
    assert scores.shape == (NQ, N) and scores.dtype == np.float32
    # scores live in the same space as decode and transform_queries
    np.testing.assert_allclose(scores, tq @ decoded.T, rtol=1e-4, atol=1e-4)
    # the name is a spec that rebuilds the same codec
    assert make_codec(codec.name).name == codec.name
    # empty input keeps the shape
    assert codec.encode(np.zeros((0, D), np.float32)).shape == (0, codes.shape[1])


@pytest.mark.parametrize("spec", CODEC_CASES)
def test_codec_agrees_with_fp32(spec, data, fitted):
    codec, codes = fitted[spec]
    tol, min_rho, min_recall = CODEC_CASES[spec]
    scores = codec.scores(data["q"], codes)
    if tol is not None:
        assert np.abs(scores - data["ref"]).max() <= tol
    assert _rank_corr(scores, data["ref"]) >= min_rho
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    assert recall_at_k(top, data["top"], K) >= min_recall


@pytest.mark.parametrize("spec", CODEC_CASES)
def test_codec_is_deterministic(spec, data, fitted):
    codec, codes = fitted[spec]
    np.testing.assert_array_equal(codec.encode(data["x"]), codes)
    again = make_codec(spec).fit(data["x"])
    np.testing.assert_array_equal(again.encode(data["x"]), codes)


@pytest.mark.parametrize("spec", CODEC_CASES)
def test_codec_save_load_round_trip(spec, data, fitted, tmp_path):
    codec, codes = fitted[spec]
    codec.save(tmp_path / "c")
    assert not list((tmp_path / "c").rglob("*.pkl"))
    loaded = load_codec(tmp_path / "c")
    assert type(loaded) is type(codec) and loaded.get_params() == codec.get_params()
    np.testing.assert_array_equal(loaded.encode(data["x"]), codes)
    np.testing.assert_array_equal(loaded.scores(data["q"], codes), codec.scores(data["q"], codes))
    assert type(codec).load(tmp_path / "c").name == codec.name


@pytest.mark.parametrize("spec", CODEC_CASES)
def test_codec_rejects_bad_input(spec, data, fitted):
    codec, codes = fitted[spec]
    x = data["x"][:300].copy()
    x[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        make_codec(spec).fit(x)
    with pytest.raises(ValueError, match="NaN"):
        codec.encode(x)
    with pytest.raises(ValueError, match="dimensions"):
        codec.encode(data["x"][:, :10])
    with pytest.raises(ValueError, match="dimensions"):
        codec.scores(data["q"][:, :10], codes)
    with pytest.raises(ValueError, match="codes"):
        codec.scores(data["q"], codes[:, :1])
    with pytest.raises(ValueError, match="codes"):
        codec.decode(codes.astype(np.float64))
    with pytest.raises(ValueError, match="empty"):
        make_codec(spec).fit(np.zeros((0, D), np.float32))
    unfitted = make_codec(spec)
    with pytest.raises(NotFittedError):
        unfitted.encode(data["x"])
    with pytest.raises(ValueError, match="not fitted"):
        unfitted.scores(data["q"], codes)


def test_make_codec_forms():
    assert make_codec("pq64").get_params() == {"m": 64, "nbits": 8}
    assert make_codec("PQ48x4").get_params() == {"m": 48, "nbits": 4}
    assert make_codec("pca128-int8").get_params() == {"dims": 128, "then": "int8"}
    assert make_codec("trunc128-fp16-renorm").get_params() == {"dims": 128, "then": "fp16", "renormalize": True}
    assert make_codec("int8-q0.995").get_params() == {"calibration": "quantile", "quantile": 0.995}
    for bad in ("fp8", "pq", "pca", "pca128-renorm", "trunc64-int8-fp16", "int8-x"):
        with pytest.raises(ValueError, match="valid forms") as info:
            make_codec(bad)
        assert all(form in str(info.value) for form in ("fp16", "binary", "pq<m>x<nbits>"))
    assert len(CODEC_SPECS) >= 8


def test_codec_parameter_errors(data):
    with pytest.raises(ValueError, match="m=7"):
        PQCodec(m=7).fit(data["x"])
    with pytest.raises(ValueError, match="at least 256"):
        PQCodec(m=8).fit(data["x"][:100])
    with pytest.raises(ValueError, match="dims"):
        make_codec("pca128").fit(data["x"])
    with pytest.raises(ValueError, match="calibration"):
        Int8Codec(calibration="mean").fit(data["x"])
    with pytest.raises(ValueError, match="quantile"):
        Int8Codec(calibration="quantile", quantile=0.2).fit(data["x"])


def test_int8_clips_values_outside_calibration(data):
    codec = Int8Codec().fit(data["x"])
    far = np.full((1, D), 10.0, np.float32)
    decoded = codec.decode(codec.encode(far))
    np.testing.assert_allclose(decoded[0], codec.low_ + 255 * codec.step_, rtol=1e-5)


# =====================================================================================
# Indexes
# =====================================================================================

# The contract every index follows (search, exclusion, filters, removals, adds, persistence,
# bad input), over every index including the service's, is tests/test_index_contract.py; the
# tests below are about one index or the factory.


# -- the exact reference --------------------------------------------------------------

def _brute_force(scores: np.ndarray, k: int, exclude=None):
    masked = scores.astype(np.float32).copy()
    if exclude is not None:
        for i, e in enumerate(exclude):
            masked[i, e] = -np.inf
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(masked, order, axis=1)
    pos = np.where(np.isneginf(top), -1, order)
    if k > scores.shape[1]:
        pad = k - scores.shape[1]
        pos = np.pad(pos, ((0, 0), (0, pad)), constant_values=-1)
        top = np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf)
    return pos, top


@pytest.mark.parametrize("chunks", [(65536, 1024), (7, 3), (1, 40), (300, 1), (64, 1000), (299, 2)])
@pytest.mark.parametrize("k", [1, 10, 50, 310])
def test_exact_equals_brute_force_with_ties(chunks, k):
    """Small-integer vectors make every dot product exact in float32 and full of ties, so
    positions must match a stable argsort exactly, whatever the chunking."""
    rng = np.random.default_rng(1)
    items = rng.integers(-2, 3, (300, 16)).astype(np.float32)
    queries = rng.integers(-2, 3, (40, 16)).astype(np.float32)
    exclude = [rng.choice(300, size=int(rng.integers(0, 300 if i == 0 else 30)), replace=False)
               for i in range(40)]
    index = ExactIndex(chunk_items=chunks[0], chunk_queries=chunks[1]).build(items)
    scores = queries @ items.T
    for excl in (None, exclude):
        pos, sc = index.search(queries, k, exclude=excl)
        want_p, want_s = _brute_force(scores, k, excl)
        np.testing.assert_array_equal(pos, want_p)
        np.testing.assert_array_equal(sc, want_s)


def test_exact_chunked_matches_unchunked_on_float_data(data):
    full = ExactIndex().build(data["x"])
    tiny = ExactIndex(chunk_items=97, chunk_queries=13).build(data["x"])
    for excl in (None, data["exclude"]):
        p0, s0 = full.search(data["q"], K, exclude=excl)
        p1, s1 = tiny.search(data["q"], K, exclude=excl)
        np.testing.assert_allclose(s1, s0, rtol=1e-6, atol=1e-6)
        assert recall_at_k(p1, p0, K) >= 0.999
    np.testing.assert_allclose(s0, np.take_along_axis(data["ref"], p0, axis=1), atol=1e-5)


def test_exact_with_codec_ranks_by_codec_scores(data):
    codec = make_codec("int8")
    index = ExactIndex(codec=codec, chunk_items=333, chunk_queries=17).build(data["x"])
    assert not hasattr(codec, "dim_in_"), "the caller's codec is not fitted in place"
    assert index.nbytes == N * D + 2 * D * 4  # int8 codes + float32 low/step per dimension
    scores = index.codec_.scores(data["q"], index.data_)
    pos, sc = index.search(data["q"], K)
    np.testing.assert_allclose(sc, np.take_along_axis(scores, pos, axis=1), rtol=1e-5, atol=1e-5)
    assert recall_at_k(pos, np.argsort(-scores, axis=1, kind="stable")[:, :K], K) >= 0.99
    # a pre-fitted codec is used as is (here fitted on other data)
    other = Int8Codec().fit(data["x"][:100])
    reused = ExactIndex(codec=other).build(data["x"])
    np.testing.assert_array_equal(reused.codec_.low_, other.low_)


def test_exact_k_larger_than_catalogue(data):
    index = ExactIndex().build(data["x"][:20])
    pos, sc = index.search(data["q"][:3], 25)
    assert (pos[:, 20:] == -1).all() and np.isneginf(sc[:, 20:]).all()
    assert sorted(pos[0, :20].tolist()) == list(range(20))


# -- knobs, factory, recall -------------------------------------------------------------

def test_hnsw_ef_search_settable_after_build(data):
    index = make_index("hnsw16-ef32").build(data["x"])
    p32, _ = index.search(data["q"], K)
    index.ef_search = 256
    assert index.name == "hnsw16-ef256"
    p256, _ = index.search(data["q"], K)
    assert recall_at_k(p256, data["top"], K) >= recall_at_k(p32, data["top"], K)


def test_ivfpq_auto_parameters_and_nprobe(data):
    index = make_index("ivfpq").build(data["x"])
    assert index.nlist_ == min(round(4 * np.sqrt(N)), N // 39) and index.m_ == D // 4
    index.nprobe = index.nlist_  # scan every list
    try:
        p, _ = index.search(data["q"], K)
        assert recall_at_k(p, data["top"], K) >= recall_at_k(index.search(data["q"], K)[0], data["top"], K)
    finally:
        index.nprobe = None
    with pytest.raises(ValueError, match="at least"):
        make_index("ivfpq").build(data["x"][:100])


def test_binary_rescore_reports_both_stores(data):
    index = make_index("binary-rescore-int8").build(data["x"])
    assert index.first_stage_bytes_per_item == D // 8
    assert index.rescore_bytes_per_item == D
    assert index.nbytes == index.first_stage_nbytes + index.rescore_nbytes
    assert index.first_stage_nbytes >= N * D // 8 and index.rescore_nbytes >= N * D


def test_make_index_forms():
    from leanrec.vectors import BinaryRescoreIndex, HNSWIndex, IVFPQIndex

    h = make_index("hnsw16-ef128-efc100-sq8")
    assert isinstance(h, HNSWIndex)
    assert h.get_params() == {"M": 16, "ef_construction": 100, "ef_search": 128, "storage": "sq8"}
    v = make_index("ivfpq-nlist64-pq8x4-nprobe4-refine-int8-kf8")
    assert isinstance(v, IVFPQIndex)
    assert v.get_params() == {"nlist": 64, "m": 8, "nbits": 4, "nprobe": 4, "refine": "int8", "k_factor": 8}
    assert make_index("ivfpq-refine").refine == "fp32"
    b = make_index("binary-rescore-fp32-c50")
    assert isinstance(b, BinaryRescoreIndex) and (b.rescore, b.candidates) == ("fp32", 50)
    assert make_index("exact-pca32-int8").codec.get_params() == {"dims": 32, "then": "int8"}
    for bad in ("hnsw-ef", "annoy", "ivfpq-foo", "binary", "exact-fp8", "binary-rescore-int4"):
        with pytest.raises(ValueError, match="valid forms") as info:
            make_index(bad)
        assert "hnsw" in str(info.value) and "binary-rescore" in str(info.value)
    assert len(INDEX_SPECS) == 5


def test_recall_at_k():
    exact = np.array([[1, 2, 3], [4, -1, -1], [-1, -1, -1]])
    approx = np.array([[3, 9, 1], [4, 5, -1], [7, 8, 9]])
    assert recall_at_k(approx, exact, k=3) == pytest.approx((2 / 3 + 1.0) / 2)
    assert recall_at_k(approx[:1], exact[:1], k=1) == 0.0
    assert recall_at_k(exact, exact, k=3) == 1.0
    with pytest.raises(ValueError, match="one row per query"):
        recall_at_k(approx[:2], exact, k=3)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(approx, exact, k=0)


def test_hnsw_search_one_from_many_threads_equals_one_thread():
    """The walk reuses a per-thread bitmap buffer and faiss parameters: threads searching at
    once (as the service's workers do) get exactly what one thread gets, and a grown index
    or a larger k rebuilds or resizes the reused parameters."""
    from concurrent.futures import ThreadPoolExecutor

    from leanrec.vectors import HNSWIndex

    rng = np.random.default_rng(5)
    X = rng.standard_normal((3000, 16)).astype(np.float32)
    idx = HNSWIndex(M=16, ef_search=32).build(X)
    queries = rng.standard_normal((64, 16)).astype(np.float32)
    excludes = [rng.choice(3000, size=int(rng.integers(1, 40)), replace=False) for _ in range(64)]
    expected = [idx.search_one(q, 10, exclude=e) for q, e in zip(queries, excludes)]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda a: idx.search_one(a[0], 10, exclude=a[1]), zip(queries, excludes)))
            for (p1, s1), (p2, s2) in zip(expected, got):
                assert np.array_equal(p1, p2) and np.array_equal(s1, s2)
    for q, e in zip(queries[:5], excludes[:5]):
        pos, _ = idx.search_one(q, 50, exclude=e)  # k above ef_search: the walk widens to k
        assert len(pos) == 50 and not set(pos) & set(e.tolist())
    idx.add(rng.standard_normal((10, 16)).astype(np.float32))
    pos, _ = idx.search_one(X[0], 3000, exclude=[0])  # the grown index: a fresh buffer
    assert 0 not in pos and len(pos) <= 3009
