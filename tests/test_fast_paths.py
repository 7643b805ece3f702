"""The shortcuts that make ML-1M's demo affordable give the plain computations' exact bits:
top-K by partition, sparse TF-IDF sums, and what a data set keeps for a grid search."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp

from leanrec.core.ranking import top_k
from leanrec.data.history import History, summable_vectors, user_vectors
from leanrec.models.content import ContentRecommender
from leanrec.models.ease import EASE
from leanrec.models.hybrid import Hybrid


def _sorted_top(scores: np.ndarray, k: int) -> np.ndarray:
    """The definition: the first k of a stable sort of the negated scores."""
    return np.argsort(-scores, axis=-1, kind="stable")[..., :min(k, scores.shape[-1])]


@pytest.mark.parametrize("k", [1, 5, 20])
def test_top_k_equals_the_stable_sort_with_ties_and_excluded_items(k):
    rng = np.random.default_rng(0)
    scores = np.round(rng.standard_normal((64, 400)), 1)  # few distinct values: ties everywhere
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[3] = 0.0                                       # one row all tied
    scores[4, :] = -np.inf                                # one row with nothing allowed
    scores[5, : k - 1] = 1.0                              # fewer than k finite above the rest
    np.testing.assert_array_equal(top_k(scores, k), _sorted_top(scores, k))
    np.testing.assert_array_equal(top_k(scores.astype(np.float32), k), _sorted_top(scores.astype(np.float32), k))


def test_top_k_falls_back_to_the_sort_where_partition_cannot_decide():
    rng = np.random.default_rng(1)
    nan_rows = rng.standard_normal((8, 100))
    nan_rows[2, 3:] = np.nan                             # fewer than k comparable entries
    np.testing.assert_array_equal(top_k(nan_rows, 10), _sorted_top(nan_rows, 10))
    short = rng.standard_normal((4, 30))                  # k close to the row length
    np.testing.assert_array_equal(top_k(short, 20), _sorted_top(short, 20))
    one = rng.standard_normal(50)                         # one row, 1-D
    np.testing.assert_array_equal(top_k(one, 5), _sorted_top(one, 5))
    assert top_k(one, 0).shape == (0,)


def test_sparse_item_vectors_give_the_dense_sums_bit_for_bit(synthetic):
    from leanrec.encoders import TfidfEncoder

    V = TfidfEncoder().fit(synthetic.items.texts).encode(synthetic.items.texts)
    S = summable_vectors(V)
    assert sp.issparse(S) and S.dtype == np.float32
    seqs = History.from_dataset(synthetic).sequences + [np.zeros(0, np.int64)]
    for half_life in (1, 4, None):
        for batch in (seqs, seqs[:3]):  # many histories (one product) and a few (row gathers)
            np.testing.assert_array_equal(user_vectors(batch, S, half_life), user_vectors(batch, V, half_life))


def test_summable_vectors_keeps_dense_and_non_finite_vectors_as_they_are():
    rng = np.random.default_rng(2)
    dense = rng.standard_normal((30, 8)).astype(np.float32)
    assert summable_vectors(dense) is dense
    sparse_nan = np.zeros((30, 100), np.float32)
    sparse_nan[0, 0] = np.nan
    assert summable_vectors(sparse_nan) is sparse_nan  # 0 · NaN would be NaN densely: no shortcut


def test_tfidf_content_model_scores_are_unchanged_by_the_sparse_sums(synthetic):
    model = ContentRecommender(encoder="tfidf", half_life=2).fit(synthetic)
    users = synthetic.events.frame["user_id"].unique()[:40]
    assert sp.issparse(model.catalogue_.summable_V)
    U = user_vectors(model.history_.sequences_of(model.history_.rows(users)), model.item_vectors_, 2)
    np.testing.assert_array_equal(model.score(users), U @ model.item_vectors_.T)


def test_a_data_set_keeps_one_derived_value_per_kind_and_drops_it_when_pickled(synthetic):
    from leanrec.data.synth import make_dataset

    ds = make_dataset(n_users=30, n_items=20, seed=5)
    calls = []

    def compute(value):
        calls.append(value)
        return [value]

    first = ds.derived("thing", 1, lambda: compute(1))
    assert ds.derived("thing", 1, lambda: compute(1)) is first and calls == [1]
    assert ds.derived("thing", 2, lambda: compute(2)) == [2]         # a new key replaces it
    assert ds.derived("thing", 1, lambda: compute(1)) is not first and calls == [1, 2, 1]
    assert History.from_dataset(ds) is History.from_dataset(ds)
    clone = pickle.loads(pickle.dumps(ds))
    assert "_derived" not in clone.__dict__
    assert clone.events.frame.equals(ds.events.frame) and History.from_dataset(clone) is not History.from_dataset(ds)
    other = ds.with_events(ds.events.frame.iloc[:-5])                  # other events: built afresh
    assert History.from_dataset(other) is not History.from_dataset(ds)


def test_ease_fits_on_one_data_set_share_a_read_only_inverse(synthetic):
    from leanrec.data.synth import make_dataset

    ds = make_dataset(n_users=60, n_items=40, seed=7)
    a, b, c = EASE(lam=50.0).fit(ds), EASE(lam=50.0).fit(ds), EASE(lam=80.0).fit(ds)
    assert a.B_ is b.B_ and not a.B_.flags.writeable
    fresh = EASE(lam=50.0).fit(make_dataset(n_users=60, n_items=40, seed=7))  # same data, new object
    np.testing.assert_array_equal(fresh.B_, a.B_)
    assert not np.array_equal(c.B_, a.B_)
    hybrid = Hybrid(content=ContentRecommender(encoder="tfidf"), cf=EASE(lam=80.0), weight=0.5).fit(ds)
    assert hybrid.cf_.B_ is EASE(lam=80.0).fit(ds).B_
