"""User histories and the time-decayed user vector: one home for both.

A user's content vector is the time-decayed weighted mean of the vectors of the items in
their history, U_u = Σ_j w_j V_j / Σ_j w_j with w_j = 0.5 ** (age_j / half_life), age_j
counted in events (the newest has age 0). The content recommender, the cost ladder's
quality checks, the batch job that recommends for every user, the service's O(d) profiles
and its explanations all compute exactly this, through the functions here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .schema import TIMESTAMP, USER_ID, Dataset

__all__ = ["History", "decay_factor", "decay_weights", "decayed_sum", "summable_vectors", "user_vectors",
           "weighted_items"]


@dataclass(frozen=True)
class History:
    """User histories of a training set: a binary user × item matrix plus ordered sequences."""

    user_ids: np.ndarray          # sorted distinct user ids, row order of ``matrix``
    matrix: sp.csr_matrix         # float32 {0,1}: did user u interact with item i
    sequences: list[np.ndarray]   # item positions in (timestamp, item id) order, per user
    item_counts: np.ndarray       # events per item (popularity)

    @classmethod
    def from_dataset(cls, ds: Dataset) -> History:
        """The data set's histories, built once per data set (``Dataset.derived``): every
        model of a grid search reads the same ones, and building them sorts every event."""
        return ds.derived("history", (), lambda: cls._build(ds))

    @classmethod
    def _build(cls, ds: Dataset) -> History:
        ev = ds.events.frame[[USER_ID, TIMESTAMP]].copy()
        ev["item_pos"] = ds.item_positions
        ev = ev.sort_values([USER_ID, TIMESTAMP, "item_pos"], kind="stable")
        user_ids, rows = np.unique(ev[USER_ID].to_numpy(), return_inverse=True)
        cols = ev["item_pos"].to_numpy()
        matrix = sp.csr_matrix(
            (np.ones(len(ev), np.float32), (rows, cols)), shape=(len(user_ids), ds.n_items)
        )
        matrix.data[:] = 1.0  # duplicates summed by the constructor: keep it binary
        bounds = np.searchsorted(rows, np.arange(len(user_ids) + 1))
        sequences = [cols[bounds[k]:bounds[k + 1]] for k in range(len(user_ids))]
        counts = np.bincount(cols, minlength=ds.n_items).astype(np.float64)
        return cls(user_ids, matrix, sequences, counts)

    def rows(self, user_ids) -> np.ndarray:
        """Row of each user id in ``matrix``; -1 for users without training history."""
        ids = np.asarray(user_ids)
        pos = np.searchsorted(self.user_ids, ids)
        pos = np.clip(pos, 0, max(len(self.user_ids) - 1, 0))
        found = len(self.user_ids) > 0
        ok = found & (self.user_ids[pos] == ids) if found else np.zeros(len(ids), bool)
        return np.where(ok, pos, -1)

    def sequences_of(self, rows: Iterable[int]) -> list[np.ndarray]:
        """The sequence of each history row; an empty one for -1 (a user without history)."""
        empty = np.zeros(0, np.int64)
        return [self.sequences[r] if r >= 0 else empty for r in rows]


def decay_weights(n: int, half_life: float | None) -> np.ndarray:
    """Weights of a history of n events, oldest first; None or inf = plain mean."""
    if half_life is None or math.isinf(half_life):
        return np.ones(n, np.float64)
    if half_life <= 0:
        raise ValueError(f"half_life must be > 0, got {half_life}")
    age = np.arange(n - 1, -1, -1, dtype=np.float64)
    return 0.5 ** (age / half_life)


def decay_factor(half_life: float | None) -> float:
    """γ = 0.5 ** (1 / half_life): what one newer event multiplies every older weight by
    (1 for the plain mean) — the running form of :func:`decay_weights`."""
    if half_life is None or math.isinf(half_life):
        return 1.0
    return 0.5 ** (1.0 / half_life)


def decayed_sum(vectors: np.ndarray, half_life: float | None) -> tuple[np.ndarray, float]:
    """(Σ_j w_j V_j as float64[d], Σ_j w_j) of a history's vectors, oldest first: the
    numerator and denominator of the user vector, which the service keeps as a running sum."""
    w = decay_weights(len(vectors), half_life)
    # float64 weights against the (float32) vectors: numpy computes in float64 without a
    # float64 copy of the history's rows (an explicit copy was a visible share of the demo's time)
    return w @ vectors, float(w.sum())


#: up to this many histories, :func:`user_vectors` sums each one's rows (O(events)); above
#: it, one sparse product reads the whole catalogue in float64 once (O(items · d)), which
#: costs more than it saves for one user (a slower recommend at MovieLens-100K's size)
FEW_HISTORIES = 16

#: item vectors with at most this share of non-zero entries are summed as a sparse matrix
#: (:func:`summable_vectors`); TF-IDF's are 0.09% non-zero on ML-1M, sentence vectors ~100%
SPARSE_SHARE = 0.05


def summable_vectors(item_vectors: np.ndarray) -> np.ndarray | sp.csr_matrix:
    """The item vectors in the form :func:`user_vectors` sums fastest: a float32 CSR matrix
    when they are finite and at most :data:`SPARSE_SHARE` of their entries are non-zero,
    else the array as given.

    Why: TF-IDF vectors are dense arrays of mostly zeros (13,471 columns, 0.09% non-zero on
    ML-1M). The sparse decay weights times them as a dense float64 array cost 1 s and a
    400 MB copy per 256 users, a third of the ML-1M demo; sparse times sparse takes 10 ms.
    The result is the same bits: every output entry adds the same non-zero products
    w_j · V_jd in the same (history) order, and the skipped products were exact zeros.
    Converting costs one pass over the array (0.3 s at ML-1M), so a caller that scores
    one catalogue many times converts once (``ItemCatalogue.summable_V``)."""
    V = np.asarray(item_vectors)
    if V.ndim == 2 and V.size and np.count_nonzero(V) <= SPARSE_SHARE * V.size and np.isfinite(V).all():
        return sp.csr_matrix(V)
    return V


def user_vectors(sequences: Iterable[np.ndarray], item_vectors: np.ndarray | sp.csr_matrix,
                 half_life: float | None) -> np.ndarray:
    """U for each history (item positions, oldest first) as float32[n, d]; zeros for an
    empty history. ``item_vectors``: an array, or its :func:`summable_vectors` form.

    Many histories at once: one sparse (users × items) matrix of decay weights times the
    item vectors in float64. Each row accumulates Σ_j w_j V_j oldest first, as
    :func:`decayed_sum` does one history at a time, and divides by the same Σw (computed
    per history length), so the result is the same float32 vector; one product instead
    of a gather and a product per user (the content models score thousands of users per
    validation grid point).
    """
    sequences = [np.asarray(s) for s in sequences]
    n, d = len(sequences), item_vectors.shape[1]
    out = np.zeros((n, d), np.float32)
    if n <= FEW_HISTORIES:  # a service or explanation call: gather the rows, not the catalogue
        for k, seq in enumerate(sequences):
            if len(seq):
                rows = item_vectors[seq]
                total, weight = decayed_sum(rows.toarray() if sp.issparse(rows) else rows, half_life)
                out[k] = total / weight
        return out
    lengths = np.fromiter((len(s) for s in sequences), np.int64, count=n)
    if not lengths.sum():
        return out
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=indptr[1:])
    # age of each event in its own history (the newest has age 0), as decay_weights counts it
    age = np.repeat(indptr[1:] - 1, lengths) - np.arange(indptr[-1])
    if half_life is None or math.isinf(half_life):
        weights = np.ones(len(age), np.float64)
    else:
        decay_weights(1, half_life)  # checks half_life
        weights = 0.5 ** (age.astype(np.float64) / half_life)
    W = sp.csr_matrix((weights, np.concatenate(sequences).astype(np.int64), indptr),
                      shape=(n, item_vectors.shape[0]))
    if sp.issparse(item_vectors):  # float64 sums (W's dtype), zeros skipped: see summable_vectors
        totals = (W @ item_vectors).toarray()
    else:
        totals = W @ np.asarray(item_vectors, np.float64)
    sums = {m: decay_weights(m, half_life).sum() for m in np.unique(lengths[lengths > 0]).tolist()}
    nonempty = np.flatnonzero(lengths)
    out[nonempty] = totals[nonempty] / np.array([sums[m] for m in lengths[nonempty].tolist()])[:, None]
    return out


def weighted_items(sequence: np.ndarray, half_life: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(distinct items of a history in ascending order, their normalised weights w_j / Σw):
    the coefficients that split ⟨U, V_i⟩ exactly into per-history-item terms; an item seen
    twice adds both events' weights."""
    seq = np.asarray(sequence)
    w = decay_weights(len(seq), half_life)
    items, inverse = np.unique(seq, return_inverse=True)
    return items, np.bincount(inverse, weights=w / w.sum(), minlength=len(items))
