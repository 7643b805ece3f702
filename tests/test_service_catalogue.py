"""The service's in-memory catalogue: exact and HNSW search agree, and neither ever returns
a deleted, excluded or filtered-out item; state survives save/restore."""

from __future__ import annotations

import numpy as np
import pytest

from leanrec.service.catalogue import Catalogue
from leanrec.vectors import recall_at_k


def _data(n=3000, d=24, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, d))
    labels = rng.integers(0, 12, n)
    V = centres[labels] + 0.4 * rng.normal(size=(n, d))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    ids = [f"i{k}" for k in range(n)]
    fields = [{"cat": f"c{labels[k]}", "tags": ["even" if k % 2 == 0 else "odd"]} for k in range(n)]
    return ids, V.astype(np.float32), fields


def _fill(index: str, **kw) -> Catalogue:
    ids, V, fields = _data()
    cat = Catalogue(V.shape[1], index=index, **kw)
    cat.upsert(ids, V, fields, [0.0] * len(ids), seq=len(ids))
    return cat


@pytest.mark.parametrize("index", ["exact", "hnsw"])
def test_search_skips_deleted_excluded_and_filtered(index):
    cat = _fill(index)
    assert cat.kind == index
    rng = np.random.default_rng(1)
    for k in rng.choice(3000, 300, replace=False):
        cat.remove(f"i{k}")
    q = cat.vector("i5")
    seen = np.array([cat.pos[f"i{k}"] for k in range(60) if f"i{k}" in cat.pos])
    mask = cat.filter_mask([("tags", "EVEN")])
    pos, scores = cat.search(q, 50, exclude=seen, mask=mask)
    assert len(pos) == 50 and np.all(np.diff(scores) <= 1e-6)
    assert cat.alive[pos].all() and mask[pos].all() and not np.isin(pos, seen).any()


def test_hnsw_agrees_with_exact_search():
    exact, hnsw = _fill("exact"), _fill("hnsw")
    for cat in (exact, hnsw):
        for k in range(0, 3000, 7):
            cat.remove(f"i{k}")
        cat.upsert(["new"], _data()[1][3:4], [{"cat": "c0"}], [1.0])
    rng = np.random.default_rng(3)  # user-like queries: near the items, not random directions
    queries = _data()[1][rng.choice(3000, 50)] + 0.2 * rng.normal(size=(50, 24)).astype(np.float32)
    got = np.stack([hnsw.search(q, 10)[0] for q in queries])
    want = np.stack([exact.search(q, 10)[0] for q in queries])
    number = {"new": 10**6}

    def to_ids(pos, cat):  # positions -> item numbers (the two catalogues may number differently)
        return np.vectorize(lambda p: number.get(cat.ids[p]) or int(cat.ids[p][1:]))(pos)

    assert recall_at_k(to_ids(got, hnsw), to_ids(want, exact), 10) >= 0.95


def test_selective_filters_and_inverted_index_follow_changes():
    cat = _fill("hnsw")
    cat.upsert(["rare"], _data()[1][:1], [{"cat": "unique"}], [1.0])
    pos, _ = cat.search(cat.vector("i0"), 5, mask=cat.filter_mask([("cat", "unique")]))
    assert [cat.ids[p] for p in pos] == ["rare"]
    cat.upsert(["rare"], _data()[1][:1], [{"cat": "other"}], [1.0])  # replaced: old fields gone
    assert not cat.filter_mask([("cat", "unique")]).any()
    assert cat.filter_mask([("cat", "other")]).sum() == 1
    both = cat.filter_mask([("cat", "c3"), ("tags", "odd")])
    assert all(cat.fields[p]["cat"] == "c3" and cat.fields[p]["tags"] == ["odd"] for p in np.flatnonzero(both))
    cat.compact()
    assert cat.filter_mask([("cat", "other")]).sum() == 1 and cat.n_dead == 0
    # a filter's positions are cached until the next change, and only until then
    key = ("cat", "other")
    assert cat._posting(key) is cat._posting(key)
    before = cat._posting(key)
    cat.upsert(["rare2"], _data()[1][:1], [{"cat": "Other"}], [1.0])
    assert cat._posting(key) is not before and cat.filter_mask([("cat", "OTHER")]).sum() == 2


def test_exact_search_gathers_a_selective_filter_with_the_same_answer(monkeypatch):
    """Exact mode scores only a small filter's rows (gathered) instead of masking a full
    mat-vec: the same top-k either way; ``filter_size`` bounds the mask without building it."""
    from leanrec.vectors import topk as topk_module

    cat = _fill("exact")
    for k in range(0, 3000, 5):
        cat.remove(f"i{k}")
    seen = np.array([cat.pos[f"i{k}"] for k in range(1, 200, 3) if f"i{k}" in cat.pos])
    cases = [[("cat", "c3")], [("cat", "c3"), ("tags", "odd")], [("tags", "even")], [("cat", "nowhere")]]
    for conditions in cases:
        mask = cat.filter_mask(conditions)
        assert cat.filter_size(conditions) >= mask.sum()
        answers = []
        # always gather (in blocks of 7 rows, and of 2048); never gather (n // 10**9 == 0)
        for share, block in ((1, 7), (1, 2048), (10**9, 2048)):
            monkeypatch.setattr(topk_module, "GATHER_SHARE", share)
            monkeypatch.setattr(topk_module, "GATHER_BLOCK", block)
            answers.append(cat.search(cat.vector("i7"), 20, exclude=seen, mask=mask))
        (pa, sa), *others = answers
        assert len(pa) == min(20, int(cat.allowed(seen, mask).sum()))
        for pb, sb in others:
            assert pa.tolist() == pb.tolist()
            np.testing.assert_allclose(sa, sb, atol=1e-6)
    assert cat.filter_size([("cat", "C3")]) == cat.filter_size([("cat", "c3")]) > 0
    assert cat.filter_size([]) is None and cat.filter_size([("cat", "nowhere")]) == 0


def test_exact_mode_switches_to_hnsw_at_the_threshold_and_compacts():
    ids, V, fields = _data(n=600)
    cat = Catalogue(V.shape[1], index="auto", hnsw_threshold=500)
    cat.upsert(ids[:400], V[:400], fields[:400], [0.0] * 400)
    assert cat.kind == "exact"
    for k in range(200):
        cat.remove(ids[k])
    assert 0 < cat.n_dead <= max(64, cat.n // 4)  # compaction keeps tombstones under the bound
    cat.upsert(ids[400:], V[400:], fields[400:], [0.0] * 200)
    assert cat.kind == "exact" and cat.n_alive == 400
    cat.upsert(ids[:100], V[:100], fields[:100], [0.0] * 100)
    assert cat.kind == "hnsw" and cat.n_alive == 500 and cat.n_dead == 0


def test_save_and_restore_round_trip(tmp_path):
    cat = _fill("hnsw")
    cat.remove("i1")
    cat.save(tmp_path, "enc")
    assert Catalogue.read_saved(tmp_path, "other-encoder") is None
    meta, graph = Catalogue.read_saved(tmp_path, "enc")
    vecs = {i: cat.vector(i) for i in cat.pos}
    fields = {i: cat.fields[cat.pos[i]] for i in cat.pos}
    back = Catalogue.restore(meta, graph, vecs, fields, {}, {}, index="hnsw")
    q = cat.vector("i9")
    assert back.n_alive == cat.n_alive and "i1" not in back
    np.testing.assert_array_equal(back.search(q, 10)[0], cat.search(q, 10)[0])
    assert back.filter_mask([("cat", "c1")]).sum() == cat.filter_mask([("cat", "c1")]).sum()
    vecs.pop("i2")
    assert Catalogue.restore(meta, graph, vecs, fields, {}, {}, index="hnsw") is None


def test_the_catalogue_searches_through_a_vector_index(tmp_path):
    """Exact below the threshold, HNSW above; either way a VectorIndex whose positions,
    tombstones and vectors are the catalogue's (one copy of the vectors in exact mode), and
    whose saved graph keeps its tombstones."""
    from leanrec.vectors import ExactIndex, HNSWIndex, VectorIndex

    for mode, cls in (("exact", ExactIndex), ("hnsw", HNSWIndex)):
        cat = _fill(mode)
        assert isinstance(cat.index, VectorIndex) and type(cat.index) is cls
        assert np.shares_memory(cat.V, cat.exact.data_)
        for k in range(0, 300, 3):
            cat.remove(f"i{k}")
        cat.upsert(["i1"], _data()[1][:1], [{"cat": "c0"}], [1.0])  # replaced: a tombstone and a new position
        assert cat.index.n_items == cat.n and cat.index.n_alive == cat.n_alive
        np.testing.assert_array_equal(cat.index.alive, cat.alive)
        q = cat.vector("i4")[None, :]
        pos, _ = cat.index.search(q, 10, exclude=[np.array([cat.pos["i4"]])], allowed=cat.filter_mask([("cat", "c1")]))
        assert pos[0].tolist() == cat.search(q[0], 10, exclude=np.array([cat.pos["i4"]]),
                                             mask=cat.filter_mask([("cat", "c1")]))[0].tolist()
    cat.save(tmp_path, "enc")
    _, graph = Catalogue.read_saved(tmp_path, "enc")
    assert graph.n_alive == cat.n_alive and not graph.alive[~cat.alive].any()


def test_graph_fast_path_equals_the_general_path():
    cat = _fill("hnsw")
    for k in range(0, 3000, 11):
        cat.remove(f"i{k}")
    q = cat.vector("i5")
    seen = np.array([cat.pos[f"i{k}"] for k in range(1, 400, 3) if f"i{k}" in cat.pos] * 2)  # repeats too
    everything = np.ones(cat.n, bool)
    fast = cat.search(q, 30, exclude=seen)
    general = cat.search(q, 30, exclude=seen, mask=everything)
    np.testing.assert_array_equal(fast[0], general[0])
    assert not np.isin(fast[0], seen).any() and cat.alive[fast[0]].all()
    # nearly everything excluded: the exact fallback still answers the few that are left
    left = np.array(sorted(cat.pos.values()))
    pos, _ = cat.search(q, 10, exclude=left[3:])
    assert sorted(pos.tolist()) == left[:3].tolist()


def test_cached_user_state_stays_out_of_the_garbage_collector(tmp_path):
    import gc

    from _service import HashEncoder
    from leanrec.service.config import ServiceConfig
    from leanrec.service.core import RecService

    svc = RecService(ServiceConfig(db=f"sqlite:///{tmp_path / 's.db'}", data_dir=str(tmp_path / "d")),
                     encoder=HashEncoder()).start()
    try:
        svc.upsert_items([{"item_id": "a", "text": "red apple", "fields": {}}])
        svc.add_events([{"user_id": "u", "item_id": "a", "ts": 1.0, "kind": "view", "value": None}])
        svc.recommend("u", 5)
        svc.recommend("unknown", 5)
        gc.collect()
        gc.collect()  # inner tuples are untracked by the first pass, the outer ones by the second
        assert not any(gc.is_tracked(v) for v in svc._users.values())
        assert svc._user_state("u").profile.n_events == 1
    finally:
        svc.stop()
