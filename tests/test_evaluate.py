"""The evaluation harness on a fixed-score model: exclusions, candidates, lists, ids."""

import numpy as np
import pandas as pd
import pytest

from leanrec.data.schema import Items
from leanrec.data.split import Targets
from leanrec.eval.evaluate import evaluate

from _fixed import FixedScores


def _items(n=5):
    return Items.from_frame(pd.DataFrame({"item_id": [10 * (i + 1) for i in range(n)], "text": list("abcde")[:n]}))


def test_seen_items_excluded_and_ranked_by_hand():
    items = _items()
    model = FixedScores(items, {"u": [0.9, 0.8, 0.7, 0.6, 0.5]})
    targets = Targets(pd.DataFrame({"user_id": ["u"], "item_id": [40], "item_pos": [3], "timestamp": [0.0]}),
                      [np.array([0, 2])])
    r = evaluate(model, targets)
    # allowed: items 1, 3, 4 -> target (item 3) is second
    assert r.ranks.tolist() == [2]
    assert r.metrics["ndcg@10"] == pytest.approx(1 / np.log2(3))
    assert r.metrics["auc"] == pytest.approx(0.5)
    recs = r.recs_frame(items.ids)
    assert recs["item_id"].tolist()[:3] == [20, 40, 50]  # dataset ids, seen items absent
    assert recs["rank"].tolist()[:3] == [1, 2, 3]


def test_candidates_restrict_ranking():
    items = _items()
    model = FixedScores(items, {1: [5.0, 4.0, 3.0, 2.0, 1.0]})
    targets = Targets(pd.DataFrame({"user_id": [1], "item_id": [50], "item_pos": [4], "timestamp": [0.0]}),
                      [np.array([], np.int64)])
    r = evaluate(model, targets, candidates=np.array([3, 4]))
    assert r.ranks.tolist() == [2]
    assert r.metrics["coverage@10"] == pytest.approx(1.0)  # both candidates appear
