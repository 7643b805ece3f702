"""Top-K and softmax: how any vector of scores becomes a ranked list and P(i|u).

One home for both, so that the library's evaluation, its models, the batch jobs and the
service rank and normalise scores the same way (ties broken by item position = item id).
"""

from __future__ import annotations

import numpy as np

__all__ = ["softmax", "top_k"]


def softmax(scores: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax; ``-inf`` entries (excluded items) get probability 0."""
    z = np.asarray(scores, np.float64) / temperature
    z = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best entries per row, best first, ties broken by lower index (= item id).

    The result is the first k of a stable sort of the negated scores (the definition). For a
    2-D block with k well below the row length it is computed without sorting whole rows:
    a partition finds each row's k-th best value t, the entries better than t and the
    lowest-index ones equal to t make up exactly those k, and only they are sorted (stable,
    so id order among ties). Same indices, a third of the time at 3,706 items (ML-1M), where
    the full sort was a tenth of the demo."""
    k = min(k, scores.shape[-1])
    if k <= 0:
        return np.zeros(scores.shape[:-1] + (0,), np.int64)
    neg = -scores
    if neg.ndim != 2 or 4 * k >= neg.shape[1]:
        # Stable sort on the negated scores keeps id order among equal scores.
        return np.argsort(neg, axis=-1, kind="stable")[..., :k]
    kth = np.partition(neg, k - 1, axis=1)[:, k - 1:k]
    if np.isnan(kth).any():  # fewer than k comparable entries in a row: the sort's NaN order decides
        return np.argsort(neg, axis=-1, kind="stable")[..., :k]
    better = neg < kth
    tied = neg == kth
    keep = better | (tied & (np.cumsum(tied, axis=1) <= k - better.sum(axis=1, keepdims=True)))
    cols = np.nonzero(keep)[1].reshape(len(neg), k)  # each row's k picks, ascending index
    order = np.argsort(np.take_along_axis(neg, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)
