"""The strictly-later subset in the evaluation, and the paired comparison with a reference."""

import numpy as np
import pandas as pd
import pytest

from leanrec.core.bootstrap import bootstrap_ci, ratio_interval
from leanrec.data.schema import Items
from leanrec.data.split import Targets
from leanrec.eval.evaluate import evaluate
from leanrec.eval.paired import compare_to_reference

from _fixed import FixedScores


ITEMS = Items.from_frame(pd.DataFrame({"item_id": [1, 2, 3, 4], "text": list("abcd")}))


def _targets(later=(True, False, True)):
    frame = pd.DataFrame({"user_id": [1, 2, 3], "item_id": [1, 2, 3], "item_pos": [0, 1, 2],
                          "timestamp": [0.0, 0.0, 0.0], "strictly_later": list(later)})
    return Targets(frame, [np.array([], np.int64)] * 3)


# target ranks: user 1 -> 1, user 2 -> 2, user 3 -> 3 (model A); 1, 1, 1 (reference)
A = {1: [4, 3, 2, 1], 2: [2, 1, 0, 0], 3: [0, 2, 1, 3]}
REF = {1: [4, 3, 2, 1], 2: [0, 2, 1, 0], 3: [0, 0, 3, 1]}


def test_strictly_later_metrics_by_hand():
    r = evaluate(FixedScores(ITEMS, A), _targets())
    assert r.ranks.tolist() == [1, 2, 3]
    later = r.metrics["strictly_later"]
    assert later["n_users"] == 2  # users 1 and 3
    assert later["ndcg@10"] == pytest.approx((1.0 + 1 / np.log2(4)) / 2)
    assert later["mrr@10"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert r.metrics["ndcg@10"] == pytest.approx((1.0 + 1 / np.log2(3) + 1 / np.log2(4)) / 3)
    assert r.strictly_later.tolist() == [True, False, True]


def test_strictly_later_absent_or_empty():
    frame = _targets().frame.drop(columns="strictly_later")
    r = evaluate(FixedScores(ITEMS, A), Targets(frame, _targets().seen))
    assert "strictly_later" not in r.metrics and r.strictly_later is None
    r = evaluate(FixedScores(ITEMS, A), _targets(later=(False, False, False)))
    assert r.metrics["strictly_later"] == {"n_users": 0}  # no NaN to write


def test_paired_comparison_by_hand():
    a = evaluate(FixedScores(ITEMS, A), _targets())
    ref = evaluate(FixedScores(ITEMS, REF), _targets())
    out = compare_to_reference(a, ref, metrics=("ndcg@10", "recall@10"), n_boot=500, seed=1)
    ndcg_a = np.array([1.0, 1 / np.log2(3), 1 / np.log2(4)])
    m = out["all"]["ndcg@10"]
    assert out["all"]["n_users"] == 3
    assert m["value"] == pytest.approx(ndcg_a.mean()) and m["reference"] == pytest.approx(1.0)
    assert m["ratio"] == pytest.approx(ndcg_a.mean()) and m["diff"] == pytest.approx(ndcg_a.mean() - 1)
    assert m["ratio_ci"] == pytest.approx(list(ratio_interval(ndcg_a, np.ones(3), n_boot=500, seed=1)))
    assert m["diff_ci"] == pytest.approx(list(bootstrap_ci(ndcg_a - 1, n_boot=500, seed=1)))
    assert m["ratio_ci"][0] <= m["ratio"] <= m["ratio_ci"][1]
    later = out["strictly_later"]
    assert later["n_users"] == 2
    assert later["ndcg@10"]["ratio"] == pytest.approx((1.0 + 0.5) / 2)
    assert later["recall@10"]["diff"] == pytest.approx(0.0)  # both hit at rank <= 10


def test_paired_comparison_with_itself_and_a_zero_reference():
    a = evaluate(FixedScores(ITEMS, A), _targets())
    same = compare_to_reference(a, a, n_boot=200)
    assert same["all"]["ndcg@10"]["ratio"] == 1.0 and same["all"]["ndcg@10"]["ratio_ci"] == [1.0, 1.0]
    assert same["all"]["ndcg@10"]["diff_ci"] == [0.0, 0.0]
    items = Items.from_frame(pd.DataFrame({"item_id": list(range(1, 31)), "text": ["x"] * 30}))
    zero = {u: [0.0] * 3 + [1.0] * 27 for u in A}  # 27 items above every target: rank > 10
    out = compare_to_reference(evaluate(FixedScores(items, zero), _targets()),
                               evaluate(FixedScores(items, zero), _targets()), n_boot=50)
    assert out["all"]["ndcg@10"]["ratio"] is None and out["all"]["ndcg@10"]["ratio_ci"] is None
    assert out["all"]["ndcg@10"]["diff"] == 0.0


def test_paired_comparison_needs_the_same_users():
    a = evaluate(FixedScores(ITEMS, A), _targets())
    frame = _targets().frame.iloc[::-1].reset_index(drop=True)
    b = evaluate(FixedScores(ITEMS, REF), Targets(frame, _targets().seen))
    with pytest.raises(ValueError, match="same user order"):
        compare_to_reference(a, b)
    with pytest.raises(ValueError, match="per-user metrics"):
        compare_to_reference(a, a, metrics=("ndcg@5",))
