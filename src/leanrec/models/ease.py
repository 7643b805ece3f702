"""EASE (Steck, 2019): a closed-form item-item model, the strongest simple CF baseline.

B = I - P · diag(1 / diag(P)) with P = (XᵀX + λI)⁻¹, and score(u) = X_u · B. One dense
n_items × n_items inverse: fine to ~20k items on one machine (O(n³) time, 8·n² bytes),
which is why the cost issue measures it before anyone scales it.
"""

from __future__ import annotations

import numpy as np

from .base import Decomposition, Recommender


class EASE(Recommender):
    def __init__(self, lam: float = 300.0):
        self.lam = lam

    def _fit(self, dataset) -> None:
        if not self.lam > 0:
            raise ValueError(f"lam must be > 0, got {self.lam}")
        X = self.history_.matrix
        gram = (X.T @ X).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.lam
        P = np.linalg.inv(gram)
        B = P / (-np.diag(P))
        B[np.diag_indices_from(B)] = 0.0
        self.B_ = B.astype(np.float32)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.history_.matrix[rows] @ self.B_, dtype=np.float32)

    explain_method = "item-item weights (EASE)"

    def _decompose(self, row: int, items: np.ndarray) -> Decomposition:
        """score_i = Σ_j X_uj B_ji over the user's (binary) history: exact."""
        hist = np.sort(self.history_.matrix[row].indices).astype(np.int64)
        zeros = np.zeros(len(items))
        return Decomposition(hist, self.B_[np.ix_(hist, items)].astype(np.float64), zeros, zeros.copy(),
                             self.explain_method)
