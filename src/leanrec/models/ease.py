"""EASE (Steck, 2019): a closed-form item-item model, the strongest simple CF baseline.

B = I - P · diag(1 / diag(P)) with P = (XᵀX + λI)⁻¹, and score(u) = X_u · B. One dense
n_items × n_items inverse: fine to ~20k items on one machine (O(n³) time, 8·n² bytes),
which is why the cost ladder measures it before anyone scales it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import Recommender
from .live import Decomposition, LiveScorer, read_array


class EASEScorer(LiveScorer):
    """score_i = Σ_j X_uj B_ji over the user's distinct items that the model knows (a
    deleted item still counts: it is in the user's history), laid over the catalogue; an
    item the model never saw scores 0."""

    kind = "ease"
    explain_method = "item-item weights (EASE)"

    def __init__(self, item_ids, popularity, B: np.ndarray, **kw):
        super().__init__(item_ids, popularity, **kw)
        self.B = np.ascontiguousarray(B, np.float32)

    def _rows(self, users, cat) -> sp.csr_matrix:
        """X: the users' known items as a binary CSR matrix over the model's rows (ascending
        columns, as the library's history matrix has them)."""
        seen = [self._seen_rows(u, cat) for u in users]
        if len(seen) == 1:  # the service's one user: a direct constructor, int32, no copy
            cols = np.unique(seen[0]).astype(np.int32)
            # scipy's checks and conversions cost as much as the product for one user
            return sp.csr_matrix((np.ones(len(cols), np.float32), cols, np.array([0, len(cols)], np.int32)),
                                 shape=(1, len(self.item_ids)), copy=False)
        lengths = np.fromiter((len(c) for c in seen), np.int64, count=len(seen))
        cols = np.concatenate(seen) if seen else np.zeros(0, np.int64)
        # many users (the library's evaluation): one COO -> CSR conversion sorts each row
        # and sums repeats (set back to 1 below), instead of a np.unique per user
        X = sp.csr_matrix((np.ones(len(cols), np.float32), (np.repeat(np.arange(len(seen)), lengths), cols)),
                          shape=(len(users), len(self.item_ids)))
        X.data[:] = 1.0
        return X

    def _seen_rows(self, user, cat) -> np.ndarray:
        """Model rows of the user's known items (from the positions the user carries when
        ``cat`` is the training catalogue itself)."""
        if user.on is not None and user.on[0] is cat and self.identity(cat):
            return user.on[1]
        return self.known_rows(user.seen)[1]

    def score(self, users, cat) -> np.ndarray:
        return self.to_catalogue(cat, np.asarray(self._rows(users, cat) @ self.B, dtype=np.float32))

    def _history_weights(self, user, cat, positions) -> tuple[np.ndarray, np.ndarray]:
        """(the user's known items as ids, their B weights toward the catalogue ``positions``
        as float64 [history, positions]; 0 toward an item the model never saw), in ascending
        model row order. Reads only the asked columns of B."""
        if user.on is not None and user.on[0] is cat and self.identity(cat):  # positions are model rows
            rows = np.unique(user.on[1])
            ids = cat.id_array[rows]
        else:
            known, rows = self.known_rows(user.seen)
            order = np.argsort(rows, kind="stable")
            ids, rows = np.asarray(known, dtype=object)[order], rows[order]
        cols = self.model_columns(cat, positions)
        ok = cols >= 0
        weights = np.zeros((len(rows), len(cols)))
        if ok.all():
            weights[:] = self.B[np.ix_(rows, cols)]
        elif ok.any():
            weights[:, ok] = self.B[np.ix_(rows, cols[ok])]
        return ids, weights

    def decompose(self, user, cat, positions) -> Decomposition:
        """score_i = Σ_j X_uj B_ji over the user's (binary) history: exact."""
        ids, weights = self._history_weights(user, cat, positions)
        n = len(positions)
        return Decomposition(ids, weights, np.zeros(n), np.zeros(n), self.explain_method)

    def decompose_mean(self, user, cat, columns):
        ids, weights = self._history_weights(user, cat, columns)
        return ids, weights.mean(axis=1) if len(columns) else np.zeros(len(ids)), 0.0, 0.0

    def _save_arrays(self, folder) -> None:
        np.save(folder / "ease_B.npy", self.B)

    @classmethod
    def read_B(cls, path, n: int) -> np.ndarray:
        B = read_array(path, "ease_B.npy", mmap_mode="r")
        if B.shape != (n, n):
            raise ValueError(f"{path}: ease_B.npy has shape {B.shape}, expected {(n, n)}")
        return np.ascontiguousarray(B, np.float32)

    @classmethod
    def _from_folder(cls, path, config, item_ids, popularity, load=None):
        return cls(item_ids, popularity, cls.read_B(path, len(item_ids)), temperature=config.get("temperature", 1.0),
                   encoder=config.get("encoder"), meta=config)


class EASE(Recommender):
    explain_method = EASEScorer.explain_method

    def __init__(self, lam: float = 300.0):
        self.lam = lam

    def _fit(self, dataset) -> None:
        if not self.lam > 0:
            raise ValueError(f"lam must be > 0, got {self.lam}")
        # B depends on the data and λ alone: kept on the data set, so the hybrid's grid (24
        # points, one λ) inverts once, not once per point (an
        # O(n_items³) inversion each; fit seconds in benchmarks/results/ml1m_core.md)
        self.B_ = dataset.derived("ease_B", float(self.lam), self._weights)

    def _weights(self) -> np.ndarray:
        """B, read-only (fitted models share it)."""
        X = self.history_.matrix
        gram = (X.T @ X).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.lam
        P = np.linalg.inv(gram)
        B = P / (-np.diag(P))
        B[np.diag_indices_from(B)] = 0.0
        B = B.astype(np.float32)
        B.flags.writeable = False
        return B

    def live_scorer(self) -> EASEScorer:
        return EASEScorer(self.items_.ids, self.history_.item_counts, self.B_, meta={"params": {"lam": self.lam}})
