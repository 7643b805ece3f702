"""User profiles in O(d) per event: the content recommender's user vector, kept up to date.

The library's user vector is U = Σ_j w_j V_j / Σ_j w_j with w_j = 0.5 ** (age_j / h), age
counted in events, newest age 0 (:class:`leanrec.models.ContentRecommender`). Written as a
running sum S and weight W, one new event is ``S ← γ·S + V``, ``W ← γ·W + 1`` with
γ = 0.5 ** (1 / h) — d multiply-adds, whatever the history's length. An event older than
the newest one already folded in cannot be folded (it belongs in the middle of the
sequence), so the service recomputes that user's profile from the stored history instead,
which gives the same vector the library would.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..data.history import decayed_sum


def profile_id(encoder_id: str, half_life: float | None) -> str:
    """Profiles depend on the item vectors and the decay; a change of either starts new ones."""
    return f"{encoder_id}|half_life={half_life}"


class Profile(NamedTuple):
    """Immutable; the service caches it as a plain tuple (``tuple(profile)``), which the
    garbage collector stops tracking, so 100k cached profiles add nothing to GC pauses."""

    total: np.ndarray      # float64[d]: Σ γ^age V
    weight: float          # Σ γ^age
    n_events: int
    last_ts: float

    @classmethod
    def empty(cls, dim: int) -> Profile:
        return cls(np.zeros(dim, np.float64), 0.0, 0, -math.inf)

    @property
    def vector(self) -> np.ndarray:
        """U as float32 (zeros for an empty profile)."""
        if self.weight <= 0:
            return np.zeros(len(self.total), np.float32)
        return (self.total / self.weight).astype(np.float32)

    def folded(self, vectors: np.ndarray, timestamps: np.ndarray, gamma: float) -> Profile:
        """A new profile with in-order events appended (O(d) each)."""
        total, weight = self.total.copy(), self.weight
        for v in vectors:
            total *= gamma
            total += v
            weight = weight * gamma + 1.0
        return Profile(total, weight, self.n_events + len(vectors), max(self.last_ts, float(np.max(timestamps))))

    @classmethod
    def from_history(cls, vectors: np.ndarray, timestamps: np.ndarray, half_life: float | None, dim: int) -> Profile:
        """The exact profile of a whole history given oldest first (what the library computes)."""
        if len(vectors) == 0:
            return cls.empty(dim)
        total, weight = decayed_sum(vectors, half_life)
        return cls(total, weight, len(vectors), float(np.max(timestamps)))

    def to_row(self, pid: str, user_id: str) -> dict:
        return {"profile_id": pid, "user_id": user_id, "vector": self.total.astype(np.float64).tobytes(),
                "weight": float(self.weight), "n_events": int(self.n_events),
                "last_ts": float(self.last_ts if math.isfinite(self.last_ts) else 0.0)}

    @classmethod
    def from_row(cls, row: dict) -> Profile:
        return cls(np.frombuffer(row["vector"], np.float64).copy(), float(row["weight"]), int(row["n_events"]),
                   float(row["last_ts"]))
