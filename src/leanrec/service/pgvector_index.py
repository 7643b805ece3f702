"""Nearest-neighbour search in PostgreSQL: the content model's read path on pgvector's HNSW
or IVFFlat index.

:class:`PgVectorIndex` answers what the service asks of ``Catalogue.search`` — the top-k
items by inner product with a query vector, never a deleted item, an excluded (seen) item
or one outside a field filter — with one SQL query on the encoder's ``vector(d)`` table
(``store.vector_table``), whose approximate index (``vector_ip_ops``; the store's ``ann``:
HNSW, or IVFFlat, which scans the ``probes`` lists whose centroids are nearest) serves
``ORDER BY embedding <#> :q LIMIT :k``. ``<#>`` is the *negative* inner product, so scores
are ``-distance``; on normalised vectors that is the cosine similarity.

Exclusions and filters. A plain HNSW scan yields at most ``hnsw.ef_search`` candidates and
filters them *afterwards*, so a user who has seen many of the nearest items, or a selective
filter, would get fewer than k. pgvector >= 0.8 resumes the graph walk until k rows pass
(``hnsw.iterative_scan``; ``relaxed_order`` lets results come back slightly out of order,
which is why rows are re-sorted here), bounded by ``hnsw.max_scan_tuples`` (IVFFlat: it
probes more lists, up to ``ivfflat.max_probes``; it has no ``strict_order``). On older
pgvector the query over-fetches ``k + |excluded|`` instead. Filters are the service's field
filters (``field:value``, case-insensitive, a list field matching any element), tested as
``filter_terms @> ARRAY['field:value', …]`` on the vector table itself (migration 0004: the
terms are kept in step with ``items.fields`` on every write, GIN-indexed), so a row costs an
array test rather than a JSON parse, and the planner can answer a selective filter from the
GIN index instead of the graph. Deleted items are skipped by the join with ``items``
(``NOT items.deleted``) even though their vectors are removed on delete. When the walk still
ends short of k (a filter so selective that the scan budget runs out), the query is repeated
as an exact one whose ``ORDER BY`` the HNSW index cannot serve (the distance ``+ 0``): with
a filter the planner then reads the filter's rows through the GIN index and sorts them, so
a short list always means that fewer than k items are allowed, and finding that out costs
the size of the filter's answer. Without a filter that fall-back scans the table.

Settings are transaction-local (``set_config(..., true)``) and sent with every query: no
DDL and no session state on the hot path. ``ef_search`` is raised to k when k is larger
(pgvector caps it at 1000).

Memory. The service still holds the in-memory :class:`~.catalogue.Catalogue` (ids,
fields, the n×d float32 matrix): user profiles fold item vectors in on every event, and the
non-content models (EASE, hybrids, sequential) score every position. With
``index = "pgvector"`` that catalogue is kept exact — no faiss graph (roughly
``2·M·4`` bytes of links per item plus faiss's own copy of the vectors) — so the service
process saves the graph and its copy; the HNSW graph lives in PostgreSQL's shared buffers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sqlalchemy import Float, Integer, String, all_, any_, bindparam, literal, select, text
from sqlalchemy.dialects.postgresql import ARRAY

from ..vectors._base import check_matrix
from ..vectors.index import check_search
from .schema import items
from .store import Store, StoreError

ITERATIVE_MODES = ("off", "relaxed_order", "strict_order")
IVFFLAT_ITERATIVE_MODES = ("off", "relaxed_order")
MAX_EF_SEARCH = 1000  # pgvector's limit

# the terms of a request's filters, lower-cased by the server as leanrec_filter_terms does
_TERM_SQL = ":{n} || ':' || lower(:{v})"


def _version_tuple(version: str | None) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in (version or "0").split("."))
    except ValueError:
        return (0,)


class PgVectorIndex:
    """Top-k inner-product search over one encoder's pgvector table.

    ``ef_search``: candidates the HNSW walk keeps (recall vs latency; raised to k);
    ``iterative_scan``: ``relaxed_order`` (default), ``strict_order`` or ``off``;
    ``max_scan_tuples``: how far an iterative walk may go before giving up (pgvector's
    default 20 000). With the store's ``ann = "ivfflat"``: ``probes`` lists are scanned
    (recall vs latency, like ``ef_search``) and an iterative scan probes up to
    ``max_probes`` (raised to ``probes``). ``settings``: more transaction-local planner
    settings sent with each query (e.g. ``{"enable_seqscan": "off"}`` to keep a small table
    on its index in tests). The constructor runs the one-off DDL (the table and its index,
    :meth:`Store.ensure_ann_index`); searches run none.
    """

    kind = "pgvector"

    def __init__(self, store: Store, encoder_id: str, dim: int, *, ef_search: int = 64,
                 iterative_scan: str = "relaxed_order", max_scan_tuples: int = 20_000, probes: int = 32,
                 max_probes: int = 128, build_index: bool = True, settings: dict[str, str] | None = None):
        store.require_pgvector()
        self.ann = store.ann
        modes = ITERATIVE_MODES if self.ann == "hnsw" else IVFFLAT_ITERATIVE_MODES
        if iterative_scan not in modes:
            raise StoreError(f"pgvector_iterative_scan must be one of {', '.join(modes)} with {self.ann}, "
                             f"got {iterative_scan!r}")
        if not 1 <= int(ef_search) <= MAX_EF_SEARCH:
            raise StoreError(f"hnsw_ef_search must be in 1..{MAX_EF_SEARCH} for pgvector, got {ef_search!r}")
        if int(probes) < 1 or int(max_probes) < 1:
            raise StoreError(f"ivfflat_probes and ivfflat_max_probes must be >= 1, got {probes!r}, {max_probes!r}")
        self.store, self.encoder_id, self.dim = store, encoder_id, int(dim)
        self.ef_search, self.max_scan_tuples = int(ef_search), int(max_scan_tuples)
        self.probes, self.max_probes = int(probes), max(int(probes), int(max_probes))
        self.settings = {str(k): str(v) for k, v in (settings or {}).items()}
        self.version = store.pgvector_version()
        self.iterative = _version_tuple(self.version) >= (0, 8)
        self.iterative_scan = iterative_scan if self.iterative else "off"
        self.table = store.vector_table(encoder_id, self.dim)
        self.index_name = store.ensure_ann_index(encoder_id) if build_index else None
        t = self.table
        self._dist = t.c.embedding.max_inner_product(bindparam("q", type_=t.c.embedding.type)).label("d")
        self._base = (select(t.c.item_id, self._dist).join(items, items.c.item_id == t.c.item_id)
                      .where(items.c.deleted.is_(False)))
        self._exact_order = (self._dist + literal(0.0, Float)).label("d_exact")  # no index can serve it
        self._exclude = t.c.item_id != all_(bindparam("ex", type_=ARRAY(String)))
        self._only = t.c.item_id == any_(bindparam("only", type_=ARRAY(String)))

    # -- SQL -----------------------------------------------------------------------------
    def _statement(self, n_excluded: int, filters: Sequence[tuple[str, str]], exact: bool = False,
                   only: bool = False):
        stmt = self._base
        if n_excluded:
            stmt = stmt.where(self._exclude)
        if only:
            stmt = stmt.where(self._only)
        if filters:
            terms = ", ".join(_TERM_SQL.format(n=f"fn{j}", v=f"fv{j}") for j in range(len(filters)))
            params = {key: val for j, (name, value) in enumerate(filters)
                      for key, val in ((f"fn{j}", name), (f"fv{j}", value))}
            stmt = stmt.where(self.table.c.filter_terms.op("@>")(text(f"ARRAY[{terms}]").bindparams(**params)))
        return stmt.order_by(self._exact_order if exact else self._dist).limit(bindparam("k", type_=Integer))

    def _settings(self, conn, k: int, limit: int, exact: bool) -> None:
        """Every setting of this query in one round trip, local to its transaction."""
        ef = min(MAX_EF_SEARCH, max(self.ef_search, limit if not self.iterative else k))
        # a custom plan per query: the planner sees this query's filter terms (a rare term is
        # answered from the GIN index, not the graph) and the seen-list as a constant array,
        # which PostgreSQL >= 15 tests through a hash table rather than element by element
        pairs = [("plan_cache_mode", "force_custom_plan")]
        if self.ann == "ivfflat":
            pairs += [("ivfflat.probes", str(self.probes))]
            if self.iterative:
                pairs += [("ivfflat.iterative_scan", self.iterative_scan), ("ivfflat.max_probes", str(self.max_probes))]
        else:
            pairs += [("hnsw.ef_search", str(ef))]
            if self.iterative:
                pairs += [("hnsw.iterative_scan", self.iterative_scan),
                          ("hnsw.max_scan_tuples", str(self.max_scan_tuples))]
        pairs += list(self.settings.items())
        if exact:
            pairs += [("enable_seqscan", "on")]
        sql = "SELECT " + ", ".join(f"set_config(:n{j}, :v{j}, true)" for j in range(len(pairs)))
        conn.execute(text(sql), {**{f"n{j}": n for j, (n, _) in enumerate(pairs)},
                                 **{f"v{j}": v for j, (_, v) in enumerate(pairs)}})

    def _run(self, q: np.ndarray, k: int, exclude_ids: list[str], filters, exact: bool,
             only_ids: list[str] | None = None):
        # without iterative scans the walk stops at ef_search candidates: over-fetch the excluded
        limit = k if self.iterative or exact else k + len(exclude_ids)
        params = {"q": q, "k": limit}
        if exclude_ids:
            params["ex"] = exclude_ids
        if only_ids is not None:
            params["only"] = only_ids
        stmt = self._statement(len(exclude_ids), filters, exact, only=only_ids is not None)
        with self.store.engine.begin() as conn:
            self._settings(conn, k, limit, exact)
            return conn.execute(stmt, params).all()

    # -- the search contract ----------------------------------------------------------------
    def search_ids(self, query: np.ndarray, k: int, *, exclude_ids: Sequence[str] = (),
                   filters: Sequence[tuple[str, str]] = (), exact: bool = False,
                   exact_fallback: bool = True, only_ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
        """Top-k item ids and inner-product scores (float32, best first; ties by id), never a
        deleted item, one of ``exclude_ids`` or one failing a ``(field, value)`` filter;
        fewer than k only when fewer are allowed. ``exact``: no graph. ``exact_fallback=False``
        returns a walk that ended short as it is, for a caller with a faster exact search
        of its own (the service's in-memory matrix); then a short list means "ask exactly".
        ``only_ids``: nothing outside these ids (an ``allowed`` bitmap of
        :class:`PgVectorPositionIndex` that keeps few items)."""
        q = np.ascontiguousarray(query, np.float32).reshape(-1)
        if len(q) != self.dim:
            raise ValueError(f"query has {len(q)} dimensions, the index {self.dim}")
        if k <= 0:
            return [], np.zeros(0, np.float32)
        ex = list(dict.fromkeys(exclude_ids))
        filters = list(filters)
        only = None if only_ids is None else list(only_ids)
        rows = self._run(q, k, ex, filters, exact, only)
        if not exact and exact_fallback and len(rows) < k:  # the walk's budget ran out first: exact
            rows = self._run(q, k, ex, filters, True, only)
        if not self.iterative and not exact:
            skip = set(ex)
            rows = [r for r in rows if r[0] not in skip]
        rows = sorted(((i, -float(d)) for i, d in rows), key=lambda r: (-r[1], r[0]))[:k]
        return [i for i, _ in rows], np.array([s for _, s in rows], np.float32)

    def search(self, cat, query: np.ndarray, k: int, *, exclude: np.ndarray | None = None,
               filters: Sequence[tuple[str, str]] = ()) -> tuple[np.ndarray, np.ndarray]:
        """``Catalogue.search``'s contract for the service: positions in ``cat`` and scores.
        ``exclude`` are catalogue positions; filters are the request's ``(field, value)``
        pairs (the SQL equivalent of ``cat.filter_mask``). An id the catalogue does not hold
        (written to the database a moment before the in-memory change) is left out."""
        ex = [cat.ids[p] for p in exclude] if exclude is not None and len(exclude) else []
        return self.positions(cat, *self.search_ids(query, k, exclude_ids=ex, filters=filters))

    def over(self, cat) -> "PgVectorPositionIndex":
        """This search as a :class:`~leanrec.vectors.index.VectorIndex` over the positions of
        ``cat`` (the service's catalogue, read live: its ids, position map and tombstones)."""
        return PgVectorPositionIndex(self, cat)

    @staticmethod
    def positions(cat, ids: Sequence[str], scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ids and scores from :meth:`search_ids` as catalogue positions (ties by position, as
        the in-memory index breaks them); ids the catalogue does not hold are left out."""
        pos = np.array([cat.pos.get(i, -1) for i in ids], np.int64)
        keep = pos >= 0
        pos, scores = pos[keep], np.asarray(scores, np.float32)[keep]
        order = np.lexsort((pos, -scores))
        return pos[order], scores[order]

    # -- inspection ------------------------------------------------------------------------
    def plan(self, query: np.ndarray, k: int, *, exclude_ids: Sequence[str] = (),
             filters: Sequence[tuple[str, str]] = (), settings: dict[str, str] | None = None,
             exact: bool = False) -> str:
        """``EXPLAIN`` of the search query with this index's settings (plus ``settings``,
        e.g. ``{"enable_seqscan": "off"}``), for tests and benchmarks."""
        q = np.ascontiguousarray(query, np.float32).reshape(-1)
        ex = list(dict.fromkeys(exclude_ids))
        stmt = self._statement(len(ex), list(filters), exact)
        params = {"q": q, "k": k, **({"ex": ex} if ex else {})}
        sql = stmt.params(**params).compile(self.store.engine, compile_kwargs={"literal_binds": True})
        with self.store.engine.begin() as conn:
            self._settings(conn, k, k, exact)
            for name, value in (settings or {}).items():
                conn.execute(text("SELECT set_config(:n, :v, true)"), {"n": name, "v": str(value)})
            return "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + str(sql)))


class _OwnItems:
    """Ids and live positions of a :class:`PgVectorPositionIndex` that writes its own items
    (the attributes of the catalogue it reads otherwise)."""

    def __init__(self):
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}

    @property
    def alive(self) -> np.ndarray:
        out = np.zeros(len(self.ids), bool)
        out[np.fromiter(self.pos.values(), np.int64, len(self.pos))] = True
        return out


class PgVectorPositionIndex:
    """:class:`~leanrec.vectors.index.VectorIndex` on PostgreSQL: the SQL search of a
    :class:`PgVectorIndex` with positions instead of ids.

    Position ``p`` is item ``source.ids[p]``; an id maps back through ``source.pos`` (live
    items only). Bound to the service's catalogue (:meth:`PgVectorIndex.over`) these are the
    catalogue's own lists, read live, so SQL answers are catalogue positions; such an index
    only reads (the service writes items through the store and the catalogue). Made without
    a source it writes items of its own, ``<prefix><position>``: ``build``/``add`` upsert
    them with their vectors, ``remove`` deletes them in the store (a soft delete, which every
    search skips: the table is the index). ``exclude`` and ``allowed`` become the SQL's id
    lists: the allowed ids when they are fewer than the others, else the others excluded.
    """

    def __init__(self, pgv: PgVectorIndex, source=None, *, prefix: str = "pos-"):
        self.pgv, self.prefix = pgv, prefix
        self._owns = source is None
        self.source = _OwnItems() if source is None else source

    # -- description -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"pgvector-{self.pgv.ann}"

    @property
    def config(self) -> dict:
        p = self.pgv
        return {"class": type(self).__name__, "name": self.name,
                "params": {"encoder_id": p.encoder_id, "ef_search": p.ef_search, "probes": p.probes,
                           "iterative_scan": p.iterative_scan, "max_scan_tuples": p.max_scan_tuples}}

    @property
    def dim(self) -> int:
        return self.pgv.dim

    @property
    def n_items(self) -> int:
        return len(self.source.ids)

    @property
    def n_alive(self) -> int:
        return len(self.source.pos)

    @property
    def alive(self) -> np.ndarray:
        return self.source.alive

    @property
    def nbytes(self) -> int:
        """The vector table's size in PostgreSQL, its ANN and filter indexes included."""
        with self.pgv.store.engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_total_relation_size(CAST(:t AS regclass))"),
                                    {"t": self.pgv.table.name}).scalar_one())

    # -- writes ------------------------------------------------------------------------------
    def _check_owner(self, what: str) -> None:
        if not self._owns:
            raise ValueError(f"{what}: this index reads the catalogue's positions; the service writes "
                             "items through the store and the catalogue")

    def build(self, vectors) -> "PgVectorPositionIndex":
        """Write ``vectors`` as items at positions ``0..n-1`` (items from an earlier build are
        deleted), then make sure the table's ANN index exists; returns self."""
        self._check_owner("build")
        vectors = check_matrix(vectors, "vectors", dim=self.dim)
        self.remove(np.arange(self.n_items))
        self.source = _OwnItems()
        self._write(vectors)
        self.pgv.index_name = self.pgv.store.ensure_ann_index(self.pgv.encoder_id)
        return self

    def add(self, vectors) -> "PgVectorPositionIndex":
        self._check_owner("add")
        vectors = check_matrix(vectors, "vectors", dim=self.dim, allow_empty=True)
        if len(vectors):
            self._write(vectors)
        return self

    def _write(self, vectors: np.ndarray) -> None:
        start = self.n_items
        ids = [f"{self.prefix}{start + k}" for k in range(len(vectors))]
        self.pgv.store.upsert_items([{"item_id": i, "text": "", "fields": {}} for i in ids], vectors,
                                    self.pgv.encoder_id)
        self.source.ids += ids
        self.source.pos.update((i, start + k) for k, i in enumerate(ids))

    def remove(self, positions) -> "PgVectorPositionIndex":
        """Delete the items at these positions in the store; returns self."""
        pos = np.asarray(positions).reshape(-1)
        if pos.size == 0:
            return self
        self._check_owner("remove")
        if not np.issubdtype(pos.dtype, np.integer) or pos.min() < 0 or pos.max() >= self.n_items:
            raise ValueError(f"positions to remove must be integers in 0..{self.n_items - 1}")
        for p in np.unique(pos).tolist():
            item_id = self.source.ids[p]
            if self.source.pos.get(item_id) == p:
                self.pgv.store.delete_item(item_id)
                del self.source.pos[item_id]
        return self

    def save(self, folder):
        raise NotImplementedError("a pgvector index lives in PostgreSQL, which persists it: reopen it with "
                                  "PgVectorIndex(store, encoder_id, dim) instead of saving it")

    # -- search --------------------------------------------------------------------------------
    def search_one(self, query, k: int, *, exclude=None, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """One query's row of :meth:`search`, without its padding."""
        pos, sc = self.search(np.asarray(query, np.float32).reshape(1, -1), k,
                              exclude=None if exclude is None else [exclude], allowed=allowed)
        keep = pos[0] >= 0
        return pos[0][keep], sc[0][keep]

    def search(self, queries, k: int, *, exclude=None, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """The protocol's search: one SQL query per query row (:meth:`PgVectorIndex.search_ids`,
        exact fall-back included, so a short row means fewer items are allowed)."""
        queries, k, excl, allowed = check_search(queries, k, self.dim, self.n_items, exclude, allowed)
        ids, live_pos = self.source.ids, self.source.pos
        live = self.alive if allowed is not None else None
        out_p = np.full((len(queries), k), -1, np.int64)
        out_s = np.full((len(queries), k), -np.inf, np.float32)
        for i, q in enumerate(queries):
            # a tombstoned position's id may live on at a newer position: exclude only live ones
            ex = [] if excl is None else [ids[p] for p in excl[i].tolist() if live_pos.get(ids[p]) == p]
            only = None
            if live is not None:
                ok = allowed & live
                n_ok = int(np.count_nonzero(ok))
                if n_ok == 0:
                    continue
                if n_ok <= self.n_alive - n_ok:
                    only = [ids[p] for p in np.flatnonzero(ok).tolist()]
                else:
                    ex += [ids[p] for p in np.flatnonzero(live & ~allowed).tolist()]
            got, scores = self.pgv.search_ids(q, k, exclude_ids=ex, only_ids=only)
            pos, scores = PgVectorIndex.positions(self.source, got, scores)
            out_p[i, :len(pos)], out_s[i, :len(pos)] = pos[:k], scores[:k]
        return out_p, out_s
