"""The internal validation of an item encoder: the warm protocol inside a data set.

Why here and not with the encoders: judging item vectors by what they recommend needs
users (their histories and time-decayed user vectors) and a full-ranking evaluation, both
above the encoders layer. The fine-tune's training loop takes it as an argument
(:func:`leanrec.eval.finetune.finetune_encoder` wires it in), and the serving-cost check
of a fine-tuned folder (:func:`leanrec.cost.finetune_check.compare_onnx_int8`) scores its
torch and ONNX int8 vectors on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from leanrec.data.history import History, decay_weights
from leanrec.data.split import Targets, make_split
from leanrec.encoders.finetune.train import check_int
from leanrec.eval.evaluate import EvalResult, evaluate

__all__ = ["ValidationSet"]


class _FixedScorer:
    """What :func:`leanrec.eval.evaluate` needs: ``items_`` and ``score(ids)``, where the ids
    are rows of a fixed matrix of user vectors (one row per validation target)."""

    def __init__(self, items, user_vectors: np.ndarray, item_vectors: np.ndarray) -> None:
        self.items_ = items
        self._users = user_vectors
        self._items = item_vectors

    def score(self, rows) -> np.ndarray:
        return self._users[np.asarray(rows, np.int64)] @ self._items.T


class ValidationSet:
    """The internal validation of a fine-tune: the warm protocol inside ``dataset``.

    The target of each user with two or more events is their last event in (timestamp,
    item) order — ``make_split(dataset, "warm").test`` — and their user vector the content
    recommender's: the time-decayed mean (``half_life`` in events) of the vectors of every
    item before it (the ``.train_valid`` history); every item is ranked, the items before
    the target excluded. ``last_n > 1`` adds each user's earlier events as targets too (the
    last ``last_n``, each with the history before it): several times the targets, so a
    tighter estimate where two encoders are compared (it overlaps what a fine-tune trained
    on, so it is not for early stopping). ``.train`` is the ``.train_valid`` data set
    (where a fine-tune mines its pairs). :meth:`ndcg` takes item vectors
    (``float32[n_items, d]``, unit rows).
    """

    def __init__(self, dataset, half_life: float | None = 8.0, *, last_n: int = 1) -> None:
        last_n = check_int("last_n", last_n, 1)
        split = make_split(dataset, "warm")
        if len(split.test) == 0:
            raise ValueError("the data set has no user with two or more events: nothing to validate on")
        self.items = dataset.items
        self.train = split.train_valid
        rows, cols, vals, targets, seen, users = [], [], [], [], [], []
        for u, seq in enumerate(History.from_dataset(dataset).sequences):
            for t in range(max(1, len(seq) - last_n), len(seq)):
                users.append(u)
                w = decay_weights(t, half_life)
                rows.append(np.full(t, len(targets)))
                cols.append(seq[:t])
                vals.append(w / w.sum())
                targets.append(int(seq[t]))
                seen.append(seq[:t])
        n = len(targets)
        self._weights = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                      shape=(n, dataset.n_items))
        # "user ids" are the rows of the weight matrix: one per target
        frame = pd.DataFrame({"user_id": np.arange(n), "item_pos": np.asarray(targets, np.int64)})
        frame["item_id"] = dataset.items.ids[frame["item_pos"].to_numpy()]
        self.targets = Targets(frame, seen)
        #: the user (row of ``History.from_dataset(dataset)``) of every target
        self.target_users = np.asarray(users, np.int64)

    def evaluate(self, item_vectors: np.ndarray) -> EvalResult:
        """The full :class:`~leanrec.eval.evaluate.EvalResult` for these item vectors."""
        V = np.asarray(item_vectors, np.float32)
        users = np.asarray(self._weights @ V.astype(np.float64), np.float32)
        return evaluate(_FixedScorer(self.items, users, V), self.targets)

    def ndcg(self, item_vectors: np.ndarray) -> float:
        """Mean NDCG@10 over the validation targets."""
        return float(self.evaluate(item_vectors).metrics["ndcg@10"])

    def describe(self) -> dict:
        """What a fine-tune's training record says of its validation."""
        return {"protocol": "warm split of the given data set: pairs from train_valid, NDCG@10 on the "
                            "last event per user, full ranking, seen items excluded",
                "train_events": len(self.train.events), "users": len(self.targets)}
