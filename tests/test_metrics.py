"""Metrics against cases computed by hand."""

import math

import numpy as np
import pytest

from leanrec.core.metrics import coverage, mrr_at_k, ndcg_at_k, recall_at_k, target_ranks


def test_rank_and_auc_by_hand():
    # items 0..4; target = item 2 with score 0.5; items 0 and 3 score higher; item 4 is excluded.
    scores = np.array([[0.9, 0.1, 0.5, 0.7, 5.0]])
    allowed = np.array([[True, True, True, True, False]])
    rank, auc = target_ranks(scores, allowed, np.array([2]))
    assert rank.tolist() == [3]
    # negatives: items 0, 1, 3; only item 1 is below -> AUC = 1/3
    assert auc[0] == pytest.approx(1 / 3)


def test_ties_broken_by_item_id_and_half_counted_in_auc():
    scores = np.array([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    allowed = np.ones_like(scores, bool)
    rank, auc = target_ranks(scores, allowed, np.array([1, 0]))
    # target 1 ties with items 0 and 2; only item 0 (lower id) goes before it
    assert rank.tolist() == [2, 1]
    # target 1: below = item 3, ties = items 0, 2 -> (1 + 0.5*2)/3
    assert auc[0] == pytest.approx(2 / 3)


def test_target_must_be_allowed():
    with pytest.raises(ValueError):
        target_ranks(np.zeros((1, 3)), np.array([[True, False, True]]), np.array([1]))


def test_cutoff_metrics_by_hand():
    rank = np.array([1, 3, 10, 11])
    assert recall_at_k(rank, 10).tolist() == [1, 1, 1, 0]
    assert ndcg_at_k(rank, 10) == pytest.approx([1.0, 1 / math.log2(4), 1 / math.log2(11), 0.0])
    assert mrr_at_k(rank, 10) == pytest.approx([1.0, 1 / 3, 0.1, 0.0])
    assert recall_at_k(rank, 1).tolist() == [1, 0, 0, 0]


def test_coverage():
    lists = np.array([[0, 1], [1, 2]])
    assert coverage(lists, 10) == pytest.approx(0.3)
    assert coverage(lists, 0) == 0.0
