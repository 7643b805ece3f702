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
    """Indices of the k best entries per row, best first, ties broken by lower index (= item id)."""
    k = min(k, scores.shape[-1])
    if k <= 0:
        return np.zeros(scores.shape[:-1] + (0,), np.int64)
    # Stable sort on the negated scores keeps id order among equal scores.
    return np.argsort(-scores, axis=-1, kind="stable")[..., :k]
