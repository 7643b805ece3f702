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

from .live import Decomposition


def zscore_split(scorer, user, cat, positions: np.ndarray, columns: np.ndarray | None, coef: np.ndarray
                 ) -> Decomposition:
    """``coef[i] · z_i`` for a component scorer's z-scores (over ``columns``; all live items
    if None), split as the module docstring says. σ is the one :func:`live.zscore` uses."""
    ref = np.flatnonzero(cat.alive) if columns is None else np.asarray(columns, np.int64)
    d = scorer.decompose(user, cat, positions)
    coef = np.asarray(coef, np.float64)
    if len(ref) == 0:  # zscore gives zeros: nothing to split
        zeros = np.zeros(len(positions))
        return Decomposition(d.history, np.zeros_like(d.contributions), zeros, zeros, d.method, d.note)
    sd = scorer.score([user], cat)[0].astype(np.float64)[ref].std()
    scale = coef / (sd if sd > 0 else 1.0)
    hist, c_mean, b_mean, u_mean = scorer.decompose_mean(user, cat, ref)
    if len(hist) != len(d.history) or not all(a == b for a, b in zip(hist, d.history)):
        raise AssertionError(f"{type(scorer).__name__}: decompose and decompose_mean disagree on the history")
    return Decomposition(d.history, (d.contributions - c_mean[:, None]) * scale[None, :],
                         (d.base - b_mean) * scale, (d.unexplained - u_mean) * scale, d.method, d.note)


def merge(parts: list[Decomposition], method: str) -> Decomposition:
    """The sum of several splits of the same items (histories united, notes kept)."""
    history = np.unique(np.concatenate([np.asarray(p.history, dtype=object) for p in parts])) if parts \
        else np.zeros(0, object)
    n = len(parts[0].base)
    contributions = np.zeros((len(history), n))
    base, unexplained = np.zeros(n), np.zeros(n)
    index = {h: k for k, h in enumerate(history)}
    for p in parts:
        if len(p.history):
            contributions[[index[h] for h in p.history]] += p.contributions
        base += p.base
        unexplained += p.unexplained
    notes = "; ".join(dict.fromkeys(p.note for p in parts if p.note and np.any(p.unexplained)))
    return Decomposition(history, contributions, base, unexplained, method, notes)
