"""Full-ranking evaluation of a fitted recommender on a set of held-out targets.

For every target user: score all items (in batches of users, so memory stays
batch × n_items, never users × items), drop non-candidates and the items the user had
already seen before the target, rank the target (ties broken by item id), and keep the
top-20 list. Metrics are averaged over users; per-user arrays are returned too so two
models can be compared pairwise later.

Where the targets carry the split's ``strictly_later`` flag, ``metrics["strictly_later"]``
holds the same per-user metrics averaged over those targets only, with their count
(``n_users``): the part of a score that does not rest on the item-id order of
same-timestamp events (see :mod:`leanrec.data.split`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..data.split import Targets
from ..core.ranking import top_k
from ..core.metrics import coverage, per_user_metrics, target_ranks

KS = (10, 20)
LIST_LENGTH = 20


@dataclass
class EvalResult:
    metrics: dict                   # name -> mean over users; "strictly_later" -> {name: mean, "n_users": n}
    per_user: dict[str, np.ndarray]
    ranks: np.ndarray
    top_items: np.ndarray           # int[n_users, LIST_LENGTH] item positions
    top_scores: np.ndarray          # float[n_users, LIST_LENGTH]; -inf = empty slot
    user_ids: np.ndarray
    score_seconds: float
    strictly_later: np.ndarray | None = None  # bool[n_users], the split's flag; None = not known

    def recs_frame(self, item_ids: np.ndarray) -> pd.DataFrame:
        """The lists as ``user_id, rank, item_id, score`` rows with the data set's own ids."""
        n, k = self.top_items.shape
        frame = pd.DataFrame({
            "user_id": np.repeat(self.user_ids, k),
            "rank": np.tile(np.arange(1, k + 1), n),
            "item_id": item_ids[self.top_items.ravel()],
            "score": self.top_scores.ravel(),
        })
        return frame[np.isfinite(frame["score"])].reset_index(drop=True)


def evaluate(model, targets: Targets, candidates: np.ndarray | None = None, *, ks=KS,
             batch_size: int = 256, progress: Callable[[int], None] | None = None) -> EvalResult:
    """Rank every target among all (or the candidate) items; see the module docstring."""
    n_items = len(model.items_)
    frame = targets.frame
    n = len(frame)
    is_candidate = np.ones(n_items, bool)
    if candidates is not None:
        is_candidate[:] = False
        is_candidate[candidates] = True
    ranks = np.zeros(n, np.int64)
    aucs = np.zeros(n)
    length = min(LIST_LENGTH, n_items)
    top_items = np.zeros((n, length), np.int64)
    top_scores = np.zeros((n, length), np.float32)
    users = frame["user_id"].to_numpy()
    target_pos = frame["item_pos"].to_numpy()
    t0 = time.perf_counter()
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        scores = model.score(users[start:stop]).astype(np.float64)
        allowed = np.broadcast_to(is_candidate, scores.shape).copy()
        for k, seen in enumerate(targets.seen[start:stop]):
            allowed[k, seen] = False
        allowed[np.arange(stop - start), target_pos[start:stop]] = True
        ranks[start:stop], aucs[start:stop] = target_ranks(scores, allowed, target_pos[start:stop])
        masked = np.where(allowed, scores, -np.inf)
        best = top_k(masked, length)
        top_items[start:stop] = best
        # -inf marks list slots with no allowed item left (fewer than 20 candidates)
        top_scores[start:stop] = np.take_along_axis(masked, best, axis=1)
        if progress:
            progress(stop - start)
    seconds = time.perf_counter() - t0
    per_user = per_user_metrics(ranks, aucs, ks)
    metrics = {name: float(np.nanmean(values)) if n else float("nan") for name, values in per_user.items()}
    n_catalogue = int(is_candidate.sum())
    for k in ks:
        filled = np.isfinite(top_scores[:, :k])
        metrics[f"coverage@{k}"] = coverage(top_items[:, :k][filled], n_catalogue)
    metrics["n_users"] = n
    later = frame["strictly_later"].to_numpy(bool) if "strictly_later" in frame else None
    if later is not None:
        metrics["strictly_later"] = subset_metrics(per_user, later)
    return EvalResult(metrics, per_user, ranks, top_items, top_scores, users, seconds, later)


def subset_metrics(per_user: dict[str, np.ndarray], mask: np.ndarray) -> dict:
    """The per-user metrics averaged over the users of ``mask`` (bool), with their count;
    just the count when the subset is empty (no NaN in results.json)."""
    mask = np.asarray(mask, bool)
    out: dict = {"n_users": int(mask.sum())}
    if mask.any():
        out.update({name: float(np.nanmean(values[mask])) for name, values in per_user.items()})
    return out
