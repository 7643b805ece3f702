"""The in-memory side of the catalogue: item vectors, an index over them, and what to skip.

Items live at *positions* 0..n-1. An upsert appends a new position (the old one, if any,
is tombstoned); a delete tombstones. Search never returns a tombstoned or an excluded
position:

* **exact** (small catalogues): one matrix-vector product over the vectors, O(n·d);
* **HNSW** (faiss, from ``hnsw_threshold`` items): the graph keeps tombstoned nodes for
  navigation, and every search passes faiss a bitmap of the allowed positions
  (``IDSelectorBitmap``), so deletions, seen items and filters cost no over-fetching;
  a filter so selective that under ~2% of the items pass falls back to an exact scan of
  those items (graph search degrades there).

``save``/``load`` persist the HNSW graph plus the position→id map and a *watermark* (the
store's item change number the state reflects); at start-up the service loads it and
applies only the changes after the watermark, so a restart re-encodes nothing and
rebuilds nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from ..vectors.faiss_index import HNSWIndex
from ..vectors.index import load_index, topk_columns

META = "catalogue.json"
# exact search with a filter gathers the allowed rows when they are at most 1/GATHER_SHARE of
# the catalogue: a gathered row costs several times a streamed one (benchmarks/filter_scan.py,
# 1M × 256-d: 100k gathered rows 27.3 ms against 63.3 ms for all 1M streamed, 250k 61.6 ms
# against 70.5 ms; the break-even is near a quarter, the bound stays on the safe side)
GATHER_SHARE = 8
# gathered rows are scored in blocks of this many (2 MB at 256-d), so that a block is still in
# cache when the mat-vec reads it instead of one n×d copy written and read back (filter_scan.py:
# 100k rows 27.3 ms in blocks; 43.8 ms as one gather in the run before the change)
GATHER_BLOCK = 2048
POSTING_CACHE = 256  # filter keys whose position arrays are kept between changes


def _top(scores: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k (score desc, then position asc) among finite scores, in O(n) plus O(k log k):
    the index package's tie-aware selection, then a sort of the k chosen. ``positions``
    must be ascending (ties at the cut then go to the lowest positions)."""
    ok = np.isfinite(scores)
    scores, positions = scores[ok], positions[ok]
    if k <= 0 or len(scores) == 0:
        return positions[:0], scores[:0]
    keep = topk_columns(scores[None, :], k)[0]
    scores, positions = scores[keep], positions[keep]
    order = np.lexsort((positions, -scores))
    return positions[order], scores[order]


class Catalogue:
    def __init__(self, dim: int, *, index: str = "auto", hnsw_threshold: int = 20_000, hnsw_m: int = 32,
                 ef_construction: int = 100, ef_search: int = 64):
        self.dim = int(dim)
        self.index_mode = index
        self.hnsw_threshold = int(hnsw_threshold)
        self.hnsw_params = {"M": hnsw_m, "ef_construction": ef_construction, "ef_search": ef_search}
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self._V = np.zeros((0, self.dim), np.float32)
        self._alive = np.zeros(0, bool)
        self.fields: list[dict | None] = []
        self.created_at = np.zeros(0, np.float64)
        self.counts = np.zeros(0, np.float64)
        self.hnsw: HNSWIndex | None = None
        self.watermark = 0
        self.version = 0  # bumps on every change (invalidates filter masks)
        self._inverted: dict[tuple[str, str], set[int]] = {}  # (field, value casefolded) -> positions
        self._bits: tuple[int, np.ndarray] | None = None  # (version, packed live bitmap)
        self._postings: dict[tuple[str, str], tuple[int, np.ndarray]] = {}  # key -> (version, positions)

    # -- views ---------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def V(self) -> np.ndarray:
        return self._V[:self.n]

    @property
    def alive(self) -> np.ndarray:
        return self._alive[:self.n]

    @property
    def n_alive(self) -> int:
        return len(self.pos)

    @property
    def n_dead(self) -> int:
        return self.n - self.n_alive

    @property
    def kind(self) -> str:
        return "hnsw" if self.hnsw is not None else "exact"

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.pos

    def vector(self, item_id: str) -> np.ndarray:
        return self._V[self.pos[item_id]]

    # -- changes -------------------------------------------------------------------
    def _grow(self, extra: int) -> None:
        need = self.n + extra
        if need <= len(self._V):
            return
        cap = max(need, 2 * len(self._V), 1024)
        V = np.zeros((cap, self.dim), np.float32)
        V[:self.n] = self.V
        alive = np.zeros(cap, bool)
        alive[:self.n] = self.alive
        self._V, self._alive = V, alive
        for name in ("created_at", "counts"):
            arr = np.zeros(cap, np.float64)
            arr[:self.n] = getattr(self, name)[:self.n]
            setattr(self, name, arr)

    def upsert(self, item_ids: list[str], vectors: np.ndarray, fields: list[dict], created_at: list[float],
               counts: list[float] | None = None, seq: int | None = None) -> None:
        """Append items (replacing live ones with the same id); vectors float32 [m, d]."""
        vectors = np.ascontiguousarray(vectors, np.float32).reshape(len(item_ids), self.dim)
        self._grow(len(item_ids))
        start = self.n
        for k, item_id in enumerate(item_ids):
            old = self.pos.get(item_id)
            count = counts[k] if counts is not None else 0.0
            if old is not None:
                self._alive[old] = False
                self._unindex(old)
                count = self.counts[old] if counts is None else count
            p = start + k
            self.ids.append(item_id)
            self.pos[item_id] = p
            self._V[p] = vectors[k]
            self._alive[p] = True
            self.fields.append(fields[k])
            self._index_fields(p, fields[k])
            self.created_at[p] = created_at[k]
            self.counts[p] = count
        if self.hnsw is not None:
            self.hnsw.add(vectors)
        self._after_change(seq)

    def remove(self, item_id: str, seq: int | None = None) -> bool:
        p = self.pos.pop(item_id, None)
        if p is None:
            return False
        self._alive[p] = False
        self._unindex(p)
        self.fields[p] = None
        self._after_change(seq)
        return True

    @staticmethod
    def _keys(fields: dict | None):
        for name, v in (fields or {}).items():
            for x in (v if isinstance(v, list) else [v]):
                if x is not None:
                    yield name, str(x).casefold()

    def _index_fields(self, p: int, fields: dict | None) -> None:
        for key in self._keys(fields):
            self._inverted.setdefault(key, set()).add(p)

    def _unindex(self, p: int) -> None:
        for key in self._keys(self.fields[p]):
            bucket = self._inverted.get(key)
            if bucket is not None:
                bucket.discard(p)
                if not bucket:
                    del self._inverted[key]

    def add_counts(self, item_ids: list[str]) -> None:
        for i in item_ids:
            p = self.pos.get(i)
            if p is not None:
                self.counts[p] += 1

    def _after_change(self, seq: int | None) -> None:
        self.version += 1
        if seq is not None:
            self.watermark = max(self.watermark, int(seq))
        want_hnsw = self.index_mode == "hnsw" or (self.index_mode == "auto" and self.n_alive >= self.hnsw_threshold)
        if want_hnsw and self.hnsw is None:
            self.compact()
            self._build_graph()
        elif self.hnsw is None and self.n_dead > max(64, self.n // 4):
            self.compact()  # exact mode: dropping tombstones is a cheap copy

    def compact(self) -> None:
        """Renumber the live items 0..m-1 (rebuilding the graph if there is one)."""
        keep = np.flatnonzero(self.alive)
        if len(keep) == self.n:
            return
        ids = [self.ids[p] for p in keep]
        V, fields = self.V[keep].copy(), [self.fields[p] for p in keep]
        created, counts = self.created_at[keep].copy(), self.counts[keep].copy()
        self.ids, self.pos = ids, {i: k for k, i in enumerate(ids)}
        self._V, self._alive = V, np.ones(len(ids), bool)
        self.fields, self.created_at, self.counts = fields, created, counts
        self._inverted = {}
        for p, f in enumerate(fields):
            self._index_fields(p, f)
        if self.hnsw is not None:
            self._build_graph()
        self.version += 1

    def _build_graph(self) -> None:
        self.hnsw = HNSWIndex(**self.hnsw_params).build(self.V) if self.n else None

    # -- search --------------------------------------------------------------------
    def filter_mask(self, conditions: list[tuple[str, str]]) -> np.ndarray | None:
        """bool[n]: items whose ``fields[name]`` equals the value (case-insensitive; for a
        list field, contains it), for every condition — from an inverted index kept up to
        date on every change, so a filter costs the size of its answer, not of the catalogue."""
        if not conditions:
            return None
        mask = None
        for name, value in conditions:
            one = np.zeros(self.n, bool)
            one[self._posting((name, value.casefold()))] = True
            mask = one if mask is None else mask & one
        return mask

    def _posting(self, key: tuple[str, str]) -> np.ndarray:
        """The positions of one filter key as an array, cached until the catalogue changes:
        turning the set into an array for every request cost a 4.5 ms median for categories of
        at most 50k items and 23 ms above that (1M items, the service profiled in-process)."""
        hit = self._postings.get(key)
        if hit is not None and hit[0] == self.version:
            return hit[1]
        bucket = self._inverted.get(key, ())
        arr = np.fromiter(bucket, np.int64, count=len(bucket))
        if len(self._postings) >= POSTING_CACHE:
            self._postings.clear()
        self._postings[key] = (self.version, arr)
        return arr

    def filter_size(self, conditions: list[tuple[str, str]]) -> int | None:
        """An upper bound on the items ``filter_mask`` would select (its rarest condition's
        count; tombstones included), in O(conditions): enough to choose between a scan of
        the filter's rows and a graph walk before building the mask. None: no filter."""
        if not conditions:
            return None
        return min(len(self._inverted.get((name, value.casefold()), ())) for name, value in conditions)

    def allowed(self, exclude: np.ndarray | None = None, mask: np.ndarray | None = None) -> np.ndarray:
        ok = self.alive.copy()
        if mask is not None:
            ok &= mask
        if exclude is not None and len(exclude):
            ok[exclude] = False
        return ok

    def search(self, query: np.ndarray, k: int, *, exclude: np.ndarray | None = None,
               mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k positions and inner-product scores, skipping tombstones, ``exclude``
        (positions) and items outside ``mask``; fewer than k when fewer are allowed."""
        if self.n == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if self.hnsw is not None and mask is None:
            return self._graph_search(query, k, exclude)
        ok = self.allowed(exclude, mask)
        n_ok = int(np.count_nonzero(ok))
        k = min(k, n_ok)
        if k == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = np.ascontiguousarray(query, np.float32).reshape(1, self.dim)
        if self.hnsw is None:
            if mask is not None and n_ok <= self.n // GATHER_SHARE:  # a selective filter: its rows only
                return self._scan_rows(np.flatnonzero(ok), q[0], k)
            # otherwise one mat-vec over the contiguous matrix beats gathering the allowed rows
            scores = np.where(ok, self.V @ q[0], -np.inf)
            return _top(scores, np.arange(self.n), k)
        if n_ok < max(2000, self.n // 50):  # a very selective filter: graph search degrades, scan instead
            return self._scan_rows(np.flatnonzero(ok), q[0], k)
        return self._faiss(q, k, np.packbits(ok, bitorder="little"))

    def _graph_search(self, query, k, exclude):
        """The hot path (HNSW, no filter): copy the cached bitmap of live items and clear the
        excluded bits — O(n/8) bytes and O(|exclude|), no pass over n booleans."""
        if self._bits is None or self._bits[0] != self.version:
            self._bits = (self.version, np.packbits(self.alive, bitorder="little"))
        bitmap = self._bits[1].copy()
        n_ok = self.n_alive
        if exclude is not None and len(exclude):
            ex = np.unique(np.asarray(exclude, np.int64))
            ex = ex[self._alive[ex]]
            n_ok -= len(ex)
            np.bitwise_and.at(bitmap, ex >> 3, ~np.left_shift(1, ex & 7).astype(np.uint8))
        k = min(k, n_ok)
        if k <= 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        q = np.ascontiguousarray(query, np.float32).reshape(1, self.dim)
        if n_ok < max(2000, self.n // 50):
            return self._scan_rows(np.flatnonzero(np.unpackbits(bitmap, count=self.n, bitorder="little")), q[0], k)
        return self._faiss(q, k, bitmap)

    def _scan_rows(self, cand: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the given (ascending) positions only: their rows gathered and scored,
        one cache-sized block at a time."""
        scores = np.empty(len(cand), np.float32)
        for lo in range(0, len(cand), GATHER_BLOCK):
            scores[lo:lo + GATHER_BLOCK] = self._V[cand[lo:lo + GATHER_BLOCK]] @ q
        return _top(scores, cand, k)

    def _faiss(self, q, k, bitmap):
        import faiss

        params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bitmap)),
                                            efSearch=max(int(self.hnsw_params["ef_search"]), k))
        D, I = self.hnsw.index_.search(q, k, params=params)
        found = I[0] >= 0
        return I[0][found].astype(np.int64), D[0][found].astype(np.float32)

    def full_scores(self, query: np.ndarray) -> np.ndarray:
        """⟨q, V_i⟩ for every position (tombstones included; callers mask them)."""
        return self.V @ np.asarray(query, np.float32)

    # -- persistence ---------------------------------------------------------------
    def save(self, folder: str | os.PathLike, encoder_id: str) -> Path:
        """Write the state atomically: a new generation folder, then a pointer swap."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        gen = root / f"gen-{time.time_ns()}"
        gen.mkdir()
        meta = {"encoder_id": encoder_id, "dim": self.dim, "watermark": self.watermark, "ids": self.ids,
                "alive": np.flatnonzero(self.alive).tolist(), "kind": self.kind, "hnsw": self.hnsw_params}
        if self.hnsw is not None:
            self.hnsw.save(gen / "hnsw")
        (gen / META).write_text(json.dumps(meta))
        tmp = root / "CURRENT.tmp"
        tmp.write_text(gen.name)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, root / "CURRENT")
        for old in root.glob("gen-*"):
            if old.name != gen.name:
                shutil.rmtree(old, ignore_errors=True)
        return gen

    @classmethod
    def restore(cls, meta: dict, graph: HNSWIndex | None, vectors: dict[str, np.ndarray], fields: dict[str, dict],
                created_at: dict[str, float], counts: dict[str, float], **options) -> Catalogue | None:
        """Rebuild the in-memory state from a saved position map (vectors come from the
        store, the graph from disk); None when a live saved item has no vector."""
        cat = cls(int(meta["dim"]), **options)
        ids = list(meta["ids"])
        alive = np.zeros(len(ids), bool)
        alive[np.asarray(meta["alive"], np.int64)] = True
        cat._grow(len(ids))
        for p, item_id in enumerate(ids):
            cat.ids.append(item_id)
            if alive[p]:
                vec = vectors.get(item_id)
                if vec is None or item_id not in fields:
                    return None
                cat.pos[item_id] = p
                cat._V[p] = vec
                cat._alive[p] = True
            cat.fields.append(fields.get(item_id) if alive[p] else None)
            cat._index_fields(p, cat.fields[p])
            cat.created_at[p] = created_at.get(item_id, 0.0)
            cat.counts[p] = counts.get(item_id, 0.0)
        cat.hnsw = graph
        cat.watermark = int(meta["watermark"])
        return cat

    @staticmethod
    def read_saved(folder: str | os.PathLike, encoder_id: str) -> tuple[dict, HNSWIndex | None] | None:
        """(meta, graph) of the saved state for this encoder, or None if there is none usable."""
        root = Path(folder)
        try:
            gen = root / (root / "CURRENT").read_text().strip()
            meta = json.loads((gen / META).read_text())
        except (OSError, ValueError):
            return None
        if meta.get("encoder_id") != encoder_id:
            return None
        graph = load_index(gen / "hnsw") if meta.get("kind") == "hnsw" else None
        if graph is not None and graph.n_items != len(meta["ids"]):
            return None
        return meta, graph
