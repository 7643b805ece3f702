"""What a cost cut does to recommendation quality, on the fixed protocols (DESIGN.md §4).

Every rung of the cost ladder changes how item vectors are made (encoder backend,
precision, pruning), stored (codec) or searched (index). Its quality is measured the same
way for all of them: the content recommender's user vector (time-decayed mean of the
user's history vectors, :func:`leanrec.data.history.user_vectors`) is the query, the
index returns the top 10 with the user's earlier items excluded, and NDCG@10 / Recall@10
are read off where the held-out item landed. The model is fitted on train+validation and
scored on the test targets, both protocols (warm, and cold items ranked among cold items
only), with one fixed half-life so that rows differ only in the cost knob.

Why through the index, not through ``evaluate``'s full score matrix: an approximate index
or a binary first stage changes *which* items come back, and that is exactly the quality
loss to be measured. With the exact index over fp32 vectors this reproduces
``evaluate(ContentRecommender(...))``'s NDCG@10 (ties go to the lower item position in
both), which the tests check.

History vectors come from the *stored* vectors (decoded codes) because in a compressed
deployment the fp32 vectors are gone; the query itself is float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.metrics import ndcg_at_k, ranks_in_lists, recall_at_k
from ..data.history import History, user_vectors
from ..data.split import Split

__all__ = ["ProtocolQuality", "protocol_queries", "rank_quality", "tune_half_life",
           "DEFAULT_HALF_LIFE", "HALF_LIFE_GRID"]

#: The content recommender's default half-life (events), used when none is tuned.
DEFAULT_HALF_LIFE = 8.0
#: Half-lives tried on validation (None = plain mean), as in the core experiment.
HALF_LIFE_GRID = (1, 2, 4, 8, 16, None)


@dataclass(frozen=True)
class ProtocolQuality:
    """NDCG@10 and Recall@10 of one configuration on one protocol's test targets."""

    protocol: str
    ndcg10: float
    recall10: float
    n_users: int
    per_user_ndcg10: np.ndarray | None = None

    def as_dict(self) -> dict:
        out = {"protocol": self.protocol, "ndcg@10": self.ndcg10, "recall@10": self.recall10, "n_users": self.n_users}
        if self.per_user_ndcg10 is not None:
            out["per_user_ndcg@10"] = [round(float(x), 6) for x in self.per_user_ndcg10]
        return out


def protocol_queries(split: Split, history_vectors: np.ndarray, half_life: float | None = DEFAULT_HALF_LIFE,
                     stage: str = "test"):
    """Query vectors, exclusions (in candidate-local positions) and target positions.

    ``history_vectors`` float32[n_items, d] are the vectors user profiles are built from.
    Returns ``(queries float32[n, d], exclude list[int64[]], targets int64[n], candidates)``
    where ``candidates`` are the global item positions the index must hold (all items for
    the warm protocol, the cold items for the cold one) and every position returned is an
    index into ``candidates``. Users without any training history get a zero query (they
    still count, with whatever the index returns for a zero vector). ``stage="valid"``
    builds profiles from ``train`` and scores the validation targets instead.
    """
    if stage not in ("test", "valid"):
        raise ValueError(f"stage must be 'test' or 'valid', got {stage!r}")
    history = History.from_dataset(split.train_valid if stage == "test" else split.train)
    targets = split.test if stage == "test" else split.valid
    n_items = history_vectors.shape[0]
    candidates = np.arange(n_items) if split.candidates is None else np.asarray(split.candidates)
    local = np.full(n_items, -1, np.int64)
    local[candidates] = np.arange(len(candidates))
    users = targets.frame["user_id"].to_numpy()
    target_pos = targets.frame["item_pos"].to_numpy()
    queries = user_vectors(history.sequences_of(history.rows(users)), history_vectors, half_life)
    exclude = []
    for seen, t in zip(targets.seen, target_pos):
        s = local[np.asarray(seen, np.int64)]
        s = s[(s >= 0) & (s != local[t])]  # the target stays rankable (repeat consumption)
        exclude.append(np.unique(s))
    return queries, exclude, local[target_pos], candidates


def rank_quality(protocol: str, positions: np.ndarray, targets: np.ndarray, k: int = 10) -> ProtocolQuality:
    """NDCG@k and Recall@k from each user's returned top-k positions and target position."""
    top = np.asarray(positions)[:, :k]
    rank = ranks_in_lists(top, targets)  # a miss ranks len(list) + 1, past the cut-off
    ndcg, recall = ndcg_at_k(rank, top.shape[1]), recall_at_k(rank, top.shape[1])
    return ProtocolQuality(protocol, float(ndcg.mean()) if len(ndcg) else float("nan"),
                           float(recall.mean()) if len(rank) else float("nan"), int(len(rank)), ndcg)


def tune_half_life(split: Split, vectors: np.ndarray, grid=HALF_LIFE_GRID) -> tuple[float | None, dict]:
    """The half-life with the best validation NDCG@10 (exact search over fp32 ``vectors``).

    Ties go to the earlier grid entry. Returns ``(best, {str(half_life): ndcg})``.
    """
    from ..vectors import ExactIndex

    scores = {}
    best, best_score = None, -1.0
    for hl in grid:
        queries, exclude, targets, candidates = protocol_queries(split, vectors, hl, stage="valid")
        positions, _ = ExactIndex().build(vectors[candidates]).search(queries, 10, exclude=exclude)
        value = rank_quality(split.protocol, positions, targets).ndcg10
        scores[str(hl)] = value
        if value > best_score:
            best, best_score = hl, value
    return best, scores
