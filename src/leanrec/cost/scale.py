"""Index cost at catalogue scale, on realistic vectors.

Uniform random vectors are the worst case for graph indexes and nothing like real item
vectors, so the scale measurements encode a generated product catalogue
(:mod:`leanrec.data.products`: titles in a few dozen skewed categories) with a real
encoder, and query it with user-like vectors: the mean of a few items of one category,
those items excluded, as a content recommender's profile would be.

Vectors are written once to a ``.npy`` file under the cache folder, keyed by the encoder's
``model_id``, the catalogue size and the seed, and memory-mapped afterwards, so a 1M-item
benchmark encodes once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..paths import cache_dir

__all__ = ["catalogue_vectors", "user_queries", "measure_index"]


def _vectors_path(model_id: str, n: int, seed: int) -> Path:
    key = hashlib.sha256(f"{model_id}|{n}|{seed}".encode()).hexdigest()[:16]
    return cache_dir() / "vectors" / f"products-{n}-{seed}-{key}.npy"


def catalogue_vectors(encoder, n: int, *, seed: int = 42, chunk_size: int = 50_000,
                      progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(float32[n, d] vectors, int[n] category codes) of ``n`` generated product titles."""
    from ..data.products import iter_products

    path = _vectors_path(encoder.model_id, n, seed)
    cats_path = path.with_suffix(".categories.npy")
    if path.exists() and cats_path.exists():
        if progress:
            progress(n)
        return np.load(path, mmap_mode="r"), np.load(cats_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    out = None
    categories = np.empty(n, np.int32)
    names: dict[str, int] = {}
    start = 0
    for chunk in iter_products(n, seed=seed, chunk_size=chunk_size):
        titles = chunk["title"].tolist()
        vecs = encoder.encode(titles)
        if out is None:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, vecs.shape[1]))
        out[start:start + len(vecs)] = vecs
        categories[start:start + len(vecs)] = [names.setdefault(c, len(names)) for c in chunk["category"]]
        start += len(vecs)
        if progress:
            progress(len(vecs))
    assert out is not None and start == n
    out.flush()
    del out
    tmp.replace(path)
    np.save(cats_path, categories)
    return np.load(path, mmap_mode="r"), categories


def user_queries(vectors: np.ndarray, categories: np.ndarray, n_queries: int, *, history: int = 10,
                 seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """User-like queries: the mean of ``history`` items of one category each, those excluded.

    The category of each user is drawn with the catalogue's own category frequencies, so
    popular categories get more users, as in real traffic.
    """
    rng = np.random.default_rng(seed)
    by_cat = {c: np.flatnonzero(categories == c) for c in np.unique(categories)}
    users_cat = rng.choice(categories, size=n_queries)
    queries = np.empty((n_queries, vectors.shape[1]), np.float32)
    exclude = []
    for k, c in enumerate(users_cat):
        pool = by_cat[c]
        seen = np.sort(rng.choice(pool, size=min(history, len(pool)), replace=False))
        queries[k] = np.asarray(vectors[seen]).mean(0)
        exclude.append(seen.astype(np.int64))
    return queries, exclude


def measure_index(index, vectors: np.ndarray, queries: np.ndarray, exclude, *, threads: int = 1,
                  latency_n: int = 1000) -> dict:
    """:func:`profile_index` plus the process memory around the build, for the planner."""
    from .hardware import PeakMemory, current_rss_bytes
    from .profile import profile_index
    from ..core.threads import thread_budget
    from ..vectors import ExactIndex

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)  # load a memmap fully: it is the index's input
    with thread_budget(threads):
        t0 = time.perf_counter()
        exact, _ = ExactIndex().build(vectors).search(queries, 10, exclude=exclude)
        exact_s = time.perf_counter() - t0
    rss_before = current_rss_bytes()
    with PeakMemory() as peak:
        prof = profile_index(index, vectors, queries, exclude=exclude, threads=threads, latency_n=latency_n,
                             exact_positions=exact)
    prof.update({"rss_before_bytes": int(rss_before), "peak_rss_bytes": int(max(peak.peak_bytes, rss_before)),
                 "vectors_bytes": int(vectors.nbytes), "exact_batch_s": exact_s})
    return prof
