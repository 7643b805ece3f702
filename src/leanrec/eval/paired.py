"""One model against a reference on the same targets: ratio and difference of each metric's
mean, with paired bootstrap 95% intervals, on all users and on the strictly-later ones.

Why: a single NDCG@10 on ML-100K has a standard error of ~10% of its value, so "0.9 of the
reference" says little without its interval; and with 415 of 943 warm test targets sharing
their timestamp with the validation event (ordered by item id alone), a model that learns
the id order can look better on all users than on the targets that truly come later. The
resampling is :mod:`leanrec.core.bootstrap`'s (users resampled with the same index for
both sides).
"""

from __future__ import annotations

import numpy as np

from ..core.bootstrap import bootstrap_ci, ratio_interval
from .evaluate import EvalResult

#: the metrics compared by default (AUC is left out: it is NaN for users with no negative)
COMPARED = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20")
N_BOOT = 2000


def compare_to_reference(result: EvalResult, reference: EvalResult, metrics=COMPARED, *, n_boot: int = N_BOOT,
                         seed: int = 0) -> dict:
    """``{"all": {...}, "strictly_later": {...}}`` (the second only when both results carry
    the split's flag), each ``{"n_users": n, metric: {"value", "reference", "ratio",
    "ratio_ci", "diff", "diff_ci"}}``; ``ratio`` is None where the reference's mean is 0.

    Both results must rank the same targets in the same user order (a ``ValueError``
    otherwise): that is what makes the bootstrap paired."""
    if not np.array_equal(np.asarray(result.user_ids), np.asarray(reference.user_ids)):
        raise ValueError("compare_to_reference needs two results on the same targets in the same user order "
                         f"(got {len(result.user_ids)} and {len(reference.user_ids)} users, not the same sequence)")
    missing = [m for m in metrics if m not in result.per_user or m not in reference.per_user]
    if missing:
        raise ValueError(f"metrics {missing} are not among the per-user metrics {sorted(result.per_user)}")
    everyone = np.ones(len(result.user_ids), bool)
    out = {"all": _compare(result, reference, everyone, metrics, n_boot, seed)}
    if result.strictly_later is not None and reference.strictly_later is not None:
        if not np.array_equal(result.strictly_later, reference.strictly_later):
            raise ValueError("the two results flag different targets as strictly later: not the same targets")
        out["strictly_later"] = _compare(result, reference, result.strictly_later, metrics, n_boot, seed)
    return out


def _compare(result: EvalResult, reference: EvalResult, mask: np.ndarray, metrics, n_boot: int, seed: int) -> dict:
    out: dict = {"n_users": int(mask.sum())}
    if not mask.any():
        return out
    for name in metrics:
        a = np.asarray(result.per_user[name], np.float64)[mask]
        b = np.asarray(reference.per_user[name], np.float64)[mask]
        mean_a, mean_b = float(a.mean()), float(b.mean())
        has_ratio = mean_b > 0
        out[name] = {
            "value": mean_a,
            "reference": mean_b,
            "ratio": mean_a / mean_b if has_ratio else None,
            "ratio_ci": list(ratio_interval(a, b, n_boot=n_boot, seed=seed)) if has_ratio else None,
            "diff": mean_a - mean_b,
            "diff_ci": list(bootstrap_ci(a - b, n_boot=n_boot, seed=seed)),
        }
    return out
