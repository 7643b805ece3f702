"""Ranking metrics from the target's rank, so every model is scored by the same few lines.

With one held-out item per user (leave-one-out), Recall@K equals HR@K: 1 if the target is
in the top K. NDCG@K = 1/log2(rank + 1) (the ideal DCG is 1), MRR@K = 1/rank, both 0 past K.
AUC is the Mann-Whitney estimate: the fraction of the user's negatives scored below the
target, ties counting one half.
"""

from __future__ import annotations

import numpy as np


def target_ranks(scores: np.ndarray, allowed: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank (1 = best) of each row's target among its allowed items, ties broken by item index
    (lower index = lower id = ranked first); also the AUC of each row.

    ``scores`` float[n, m], ``allowed`` bool[n, m] (the target must be allowed), ``target`` int[n].
    """
    n = len(target)
    rows = np.arange(n)
    if not allowed[rows, target].all():
        raise ValueError("a target item is not among the allowed candidates")
    s_t = scores[rows, target][:, None]
    cols = np.arange(scores.shape[1])[None, :]
    higher = allowed & (scores > s_t)
    tied = allowed & (scores == s_t) & (cols != target[:, None])
    lower = allowed & (scores < s_t)
    tied_before = (tied & (cols < target[:, None])).sum(1)
    rank = 1 + higher.sum(1) + tied_before
    n_neg = allowed.sum(1) - 1
    auc = np.where(n_neg > 0, (lower.sum(1) + 0.5 * tied.sum(1)) / np.maximum(n_neg, 1), np.nan)
    return rank.astype(np.int64), auc


def recall_at_k(rank: np.ndarray, k: int) -> np.ndarray:
    return (rank <= k).astype(np.float64)


def ndcg_at_k(rank: np.ndarray, k: int) -> np.ndarray:
    return np.where(rank <= k, 1.0 / np.log2(rank + 1.0), 0.0)


def mrr_at_k(rank: np.ndarray, k: int) -> np.ndarray:
    return np.where(rank <= k, 1.0 / rank, 0.0)


def ranks_in_lists(lists: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rank (1 = best) of each row's target in its returned list, ``len(list) + 1`` where the
    list misses it: for ranking through an index, which returns lists, not scores."""
    top = np.asarray(lists)
    hit = top == np.asarray(targets)[:, None]
    return np.where(hit.any(1), hit.argmax(1) + 1, top.shape[1] + 1).astype(np.int64)


def per_user_metrics(rank: np.ndarray, auc: np.ndarray, ks=(10, 20)) -> dict[str, np.ndarray]:
    """Per-user arrays (kept for paired A/B comparisons), named like ``ndcg@10``."""
    out: dict[str, np.ndarray] = {"auc": auc}
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(rank, k)
        out[f"ndcg@{k}"] = ndcg_at_k(rank, k)
        out[f"mrr@{k}"] = mrr_at_k(rank, k)
    return out


def coverage(top_lists: np.ndarray, n_catalogue: int) -> float:
    """Share of the catalogue (or candidate set) that appears in at least one list."""
    if n_catalogue <= 0:
        return 0.0
    return float(np.unique(top_lists).size / n_catalogue)
