"""Exact score splits for fused models: a z-score is affine in the score it normalises.

For one user, z_i = (s_i − μ) / σ with μ, σ the mean and spread of the user's scores over
the reference columns. If s_i = Σ_j C_ji + b_i (a component's :class:`Decomposition`), then
μ = Σ_j mean(C_j·) + mean(b), so z_i = Σ_j (C_ji − mean(C_j·)) / σ + (b_i − mean(b)) / σ:
each history item keeps an exact, *centred* contribution (how much it lifts this item above
the user's average item), and σ is one per-user scale. A weighted sum of such components
(:class:`~leanrec.models.hybrid.Hybrid`, :class:`~leanrec.models.learned_hybrid.LearnedHybrid`)
is then split exactly by adding the components' splits. A component without an exact split
carries its share into ``unexplained`` — never into invented reasons.
"""

from __future__ import annotations

import numpy as np

from .base import Decomposition

CHUNK = 4096  # items per decomposition call while averaging over a whole catalogue


def column_means(model, user_id, columns: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Means over ``columns`` of a component's split: (per history item, base, unexplained).
    Computed in chunks of items, so memory stays history × CHUNK."""
    sums, base, unexplained = None, 0.0, 0.0
    for lo in range(0, len(columns), CHUNK):
        d = model.decompose(user_id, columns[lo:lo + CHUNK])
        part = d.contributions.sum(axis=1)
        sums = part if sums is None else sums + part
        base += float(d.base.sum())
        unexplained += float(d.unexplained.sum())
    n = max(len(columns), 1)
    if sums is None:
        sums = np.zeros(0)
    return sums / n, base / n, unexplained / n


def zscore_split(model, user_id, items: np.ndarray, columns: np.ndarray | None, coef: np.ndarray) -> Decomposition:
    """``coef[i] · z_i`` for a component's z-scores (over ``columns``; all items if None),
    split as the module docstring says. The spread σ is the one :func:`hybrid.zscore` uses."""
    n_items = len(model.items_)
    ref = np.arange(n_items) if columns is None else np.asarray(columns, np.int64)
    d = model.decompose(user_id, items)
    coef = np.asarray(coef, np.float64)
    if len(ref) == 0:  # hybrid.zscore gives zeros: nothing to split
        zeros = np.zeros(len(items))
        return Decomposition(d.history, np.zeros_like(d.contributions), zeros, zeros, d.method, d.note)
    scores = model.score([user_id])[0].astype(np.float64)[ref]
    sd = scores.std()
    scale = coef / (sd if sd > 0 else 1.0)
    c_mean, b_mean, u_mean = column_means(model, user_id, ref)
    return Decomposition(d.history, (d.contributions - c_mean[:, None]) * scale[None, :],
                         (d.base - b_mean) * scale, (d.unexplained - u_mean) * scale, d.method, d.note)


def merge(parts: list[Decomposition], method: str) -> Decomposition:
    """The sum of several splits of the same items (histories united, notes kept)."""
    history = np.unique(np.concatenate([p.history for p in parts])) if parts else np.zeros(0, np.int64)
    n = len(parts[0].base)
    contributions = np.zeros((len(history), n))
    base, unexplained = np.zeros(n), np.zeros(n)
    for p in parts:
        contributions[np.searchsorted(history, p.history)] += p.contributions
        base += p.base
        unexplained += p.unexplained
    notes = "; ".join(dict.fromkeys(p.note for p in parts if p.note and np.any(p.unexplained)))
    return Decomposition(history.astype(np.int64), contributions, base, unexplained, method, notes)
