"""Top-k selection kernels shared by every index: tie-aware selection, result sorting, and the
single-query exact scans the service's catalogue is tuned on.

Every result in :mod:`leanrec.vectors` is ordered the same way: score descending, ties by
lower position, ``-1``/``-inf`` padding last. The kernels here are the one home of that order.

The single-query scans (:func:`masked_top`, :func:`scan_rows`) are what a service request
costs on an exact index and on an HNSW index's fall-back for very selective filters; their
two constants carry measured figures (``benchmarks/filter_scan.py``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["GATHER_BLOCK", "GATHER_SHARE", "masked_top", "scan_rows", "sort_results", "top_k", "topk_columns"]

# exact search with a filter gathers the allowed rows when they are at most 1/GATHER_SHARE of
# the catalogue: a gathered row costs several times a streamed one, the break-even is near a
# quarter of the catalogue and the bound stays on the safe side (benchmarks/results/filter_scan.md)
GATHER_SHARE = 8
# gathered rows are scored in blocks of this many (2 MB at 256-d), so that a block is still in
# cache when the mat-vec reads it instead of one n×d copy written and read back (faster in
# benchmarks/results/filter_scan.md)
GATHER_BLOCK = 2048


def sort_results(positions: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row by score descending then position ascending; ``-1`` rows become ``-inf``."""
    scores = np.where(positions < 0, -np.inf, scores).astype(np.float32)
    # Padding last: among -inf entries, real positions (never returned) before -1 is moot.
    order = np.lexsort((np.where(positions < 0, np.iinfo(np.int64).max, positions), -scores), axis=-1)
    positions = np.take_along_axis(positions, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    positions = np.where(np.isneginf(scores), -1, positions).astype(np.int64)
    return positions, scores


def topk_columns(s: np.ndarray, k: int) -> np.ndarray:
    """Column indices ``[rows, k]`` (ascending) of the k best entries of each row, ties
    broken by lower column.

    ``argpartition`` alone picks arbitrarily among entries equal to the k-th value, so
    the threshold ``t`` is found with ``partition``, everything above it is kept and the
    ties are filled in column order (a Python loop only over rows with surplus ties).
    """
    w = s.shape[1]
    if w <= k:
        return np.broadcast_to(np.arange(w), s.shape).copy()
    t = np.partition(s, w - k, axis=1)[:, w - k][:, None]
    gt = s > t
    eq = s == t
    need = k - gt.sum(axis=1)
    sel = gt | eq
    for r in np.flatnonzero(eq.sum(axis=1) > need):
        ties = np.flatnonzero(eq[r])
        sel[r, ties[need[r]:]] = False
    return np.nonzero(sel)[1].reshape(len(s), k)


def top_k(scores: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best k (score desc, then position asc) among finite scores, in O(n) plus O(k log k):
    :func:`topk_columns`' tie-aware selection, then a sort of the k chosen. ``positions``
    must be ascending (ties at the cut then go to the lowest positions). Fewer than k
    when fewer scores are finite; no padding."""
    ok = np.isfinite(scores)
    scores, positions = scores[ok], positions[ok]
    if k <= 0 or len(scores) == 0:
        return positions[:0], scores[:0]
    keep = topk_columns(scores[None, :], k)[0]
    scores, positions = scores[keep], positions[keep]
    order = np.lexsort((positions, -scores))
    return positions[order], scores[order]


def scan_rows(matrix: np.ndarray, cand: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over the given (ascending) rows of ``matrix`` only: gathered and scored one
    cache-sized block (:data:`GATHER_BLOCK` rows) at a time."""
    scores = np.empty(len(cand), np.float32)
    for lo in range(0, len(cand), GATHER_BLOCK):
        scores[lo:lo + GATHER_BLOCK] = matrix[cand[lo:lo + GATHER_BLOCK]] @ q
    return top_k(scores, cand, k)


def masked_top(matrix: np.ndarray, q: np.ndarray, ok: np.ndarray | None, k: int, *,
               may_gather: bool) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of ``matrix @ q`` among the rows where ``ok`` (None: every row).

    One mat-vec over the contiguous matrix, masked, unless ``may_gather`` (the caller has a
    filter, not just a few exclusions) and at most 1/:data:`GATHER_SHARE` of the rows are
    allowed: then only those rows are gathered and scored (:func:`scan_rows`).
    """
    n = len(matrix)
    if ok is None:
        return top_k(matrix @ q, np.arange(n), k)
    if may_gather and np.count_nonzero(ok) <= n // GATHER_SHARE:  # a selective filter: its rows only
        return scan_rows(matrix, np.flatnonzero(ok), q, k)
    return top_k(np.where(ok, matrix @ q, -np.inf), np.arange(n), k)
