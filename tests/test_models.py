"""One shared contract test for every recommender, then each model's own math by hand."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from leanrec.data.schema import Dataset, Events, Items
from leanrec.data.split import temporal_leave_one_out
from leanrec.core.ranking import softmax
from leanrec.data.history import FEW_HISTORIES, decay_weights, decayed_sum, user_vectors
from leanrec.models import EASE, ContentRecommender, Hybrid, MostPopular
from leanrec.models.learned_hybrid import LearnedHybrid
from leanrec.models.sequential import SequentialRecommender


def _seq(pooling, **kw):
    return SequentialRecommender(encoder="tfidf", pooling=pooling, dim=16, max_len=12, max_epochs=4, patience=2,
                                 batch_size=32, lr=5e-3, **kw)


MODELS = {
    "popular": lambda: MostPopular(),
    "ease": lambda: EASE(lam=10.0),
    "tfidf": lambda: ContentRecommender(encoder="tfidf", half_life=4),
    "hybrid": lambda: Hybrid(ContentRecommender(encoder="tfidf", half_life=2), EASE(lam=10.0), weight=0.5),
    "projection": lambda: _seq("mean"),
    "attention": lambda: _seq("attention"),
    "sasrec": lambda: _seq("sasrec", item_ids=True),
    "learned-hybrid": lambda: LearnedHybrid([("ease", EASE(lam=10.0)),
                                             ("tfidf", ContentRecommender(encoder="tfidf", half_life=2)),
                                             ("sasrec", _seq("sasrec"))]),
}


@pytest.fixture(params=list(MODELS), scope="module")
def fitted(request, synthetic):
    split = temporal_leave_one_out(synthetic)
    return MODELS[request.param]().fit(split.train), split


def test_contract_fit_returns_self_and_params_roundtrip(synthetic):
    for make in MODELS.values():
        model = make()
        assert model.fit(synthetic) is model
        again = clone(model)
        assert again.get_params().keys() == model.get_params().keys()
        assert not hasattr(again, "history_")


def test_contract_not_fitted_error():
    for make in MODELS.values():
        with pytest.raises(RuntimeError, match="not fitted"):
            make().score([1])


def test_contract_scores(fitted):
    model, split = fitted
    users = split.test.frame["user_id"].to_numpy()[:7]
    s = model.score(users)
    assert s.shape == (7, split.train.n_items) and s.dtype == np.float32 and np.isfinite(s).all()
    assert np.array_equal(s, model.score(users))  # deterministic
    assert (model.score(["nobody"]) == 0).all()   # unknown user: zeros, never an error


def test_contract_recommend_excludes_seen_and_probabilities(fitted):
    model, split = fitted
    user = split.test.frame["user_id"].iloc[0]
    seen = set(split.train.events.frame.query("user_id == @user")["item_id"])
    recs = model.recommend(user, k=10)
    assert len(recs) == 10 and not ({r.item_id for r in recs} & seen)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    assert all(0 < r.proba < 1 for r in recs)
    with_seen = model.recommend(user, k=len(model.items_), exclude_seen=False)
    assert abs(sum(r.proba for r in with_seen) - 1) < 1e-6
    p = model.predict_proba([user], candidates=np.arange(5))
    assert p.shape == (1, len(model.items_)) and abs(p.sum() - 1) < 1e-9 and (p[0, 5:] == 0).all()


def test_contract_beats_random_on_generated_data(fitted):
    from leanrec.eval.evaluate import evaluate

    model, split = fitted
    result = evaluate(model, split.valid)
    random_ndcg = 1 / split.train.n_items * 3  # generous bound on a random ranking's NDCG@10
    assert result.metrics["ndcg@10"] > random_ndcg


def test_contract_decomposition_adds_up_to_the_score(fitted, request):
    model, split = fitted
    name = request.node.callspec.params["fitted"]
    for user in split.test.frame["user_id"].to_numpy()[:3]:
        d = model.decompose(user)
        s = model.score([user])[0].astype(np.float64)
        assert np.allclose(d.total, s, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(s).max()))
        transformer_counts = name == "sasrec" or (
            name == "learned-hybrid" and (model.weights_["sasrec"] > 0 or model.new_item_weights_["sasrec"] > 0))
        assert d.exact == (not transformer_counts), d.note
        assert d.exact or d.note  # a model that cannot split its score says why
        seen = set(np.flatnonzero(model.seen_mask([user])[0]))
        assert set(d.history.tolist()) <= seen  # only the user's own items are reasons
        best = model.recommend(user, k=1)[0]
        e = model.explain(user, best.item_id)
        assert e.exact == d.exact and abs(e.score - best.score) < 1e-6
        assert abs(e.total - e.score) <= 1e-5 * max(1.0, abs(e.score))
        assert e.sentence
        if not e.exact:
            assert "no exact split" in e.sentence and "transformer" in e.note


def _tiny():
    items = Items.from_frame(pd.DataFrame({"item_id": [1, 2, 3, 4],
                                           "text": ["red apple", "green apple", "blue car", "fast car"]}))
    ev = Events.from_frame(pd.DataFrame({"user_id": ["a", "a", "b", "b", "c"], "item_id": [1, 2, 2, 3, 3],
                                         "timestamp": [1, 2, 1, 2, 1]}))
    return Dataset(items, ev)


def test_popular_counts():
    m = MostPopular().fit(_tiny())
    assert m.score(["a"])[0].tolist() == [1, 2, 2, 0]
    assert [r.item_id for r in m.recommend("c", k=3)] == [2, 1, 4]  # item 3 seen; then by popularity


def test_ease_closed_form_by_hand():
    ds = _tiny()
    lam = 2.0
    X = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0]], float)
    P = np.linalg.inv(X.T @ X + lam * np.eye(4))
    B = np.eye(4) - P / np.diag(P)
    np.fill_diagonal(B, 0)
    m = EASE(lam=lam).fit(ds)
    assert np.allclose(m.B_, B, atol=1e-6)
    assert np.allclose(m.score(["a", "b", "c"]), X @ B, atol=1e-5)
    with pytest.raises(ValueError):
        EASE(lam=0).fit(ds)


class FixedEncoder:
    """Two-dimensional vectors chosen by hand."""

    model_id = "fixed"
    dim = 2

    def __init__(self, vectors):
        self.vectors = np.asarray(vectors, np.float32)

    def encode(self, texts, **_):
        return self.vectors[: len(texts)]


def test_content_user_vector_is_decayed_mean():
    V = [[1, 0], [0, 1], [0.6, 0.8], [-1, 0]]
    m = ContentRecommender(encoder=FixedEncoder(V), half_life=1.0, cache=False).fit(_tiny())
    # user a: items 1 (older, weight 0.5) then 2 (weight 1)
    U = (0.5 * np.array([1, 0]) + 1.0 * np.array([0, 1])) / 1.5
    assert np.allclose(m.score(["a"])[0], np.array(V) @ U, atol=1e-6)
    assert np.allclose(decay_weights(3, 2.0), [0.5, 0.5 ** 0.5, 1.0])
    assert np.allclose(decay_weights(3, None), [1, 1, 1])
    p = m.predict_proba(["a"])[0]
    assert np.allclose(p, softmax(np.array(V) @ U))


@pytest.mark.parametrize("half_life", [0.5, 2.0, 8.0, None])
def test_user_vectors_equal_one_decayed_sum_per_history(half_life):
    """The batched product (one sparse weight matrix) gives the very float32 vector that
    the service's running sum gives one history at a time: repeats, empty histories and
    long histories included."""
    rng = np.random.default_rng(3)
    V = rng.standard_normal((50, 16)).astype(np.float32)
    seqs = [rng.integers(0, 50, n) for n in (0, 1, 2, 7, 9, 130, 300)] * 3 + [np.array([4, 4, 4])]
    assert len(seqs) > FEW_HISTORIES  # the batched product, and below: one history at a time
    got = user_vectors(seqs, V, half_life)
    for k in range(4):
        assert np.array_equal(user_vectors(seqs[k:k + 1], V, half_life)[0], got[k])
    for seq, row in zip(seqs, got):
        if len(seq):
            total, weight = decayed_sum(V[seq], half_life)
            assert np.array_equal(row, (total / weight).astype(np.float32))
        else:
            assert not row.any()
    assert user_vectors([], V, half_life).shape == (0, 16)


def test_content_scores_items_without_events():
    m = ContentRecommender(encoder="tfidf", half_life=None).fit(_tiny())
    s = m.score(["c"])[0]  # user c saw "blue car"; item 4 "fast car" has no events at all
    assert s[3] > s[0] and s[3] > 0


def test_hybrid_falls_back_to_content_for_items_without_events():
    ds = _tiny()
    h = Hybrid(ContentRecommender(encoder="tfidf", half_life=None), EASE(lam=1.0), weight=1.0).fit(ds)
    content = ContentRecommender(encoder="tfidf", half_life=None).fit(ds).score(["c"])[0]
    z = (content - content.mean()) / content.std()
    assert h.score(["c"])[0][3] == pytest.approx(z[3], abs=1e-5)  # item 4: content only, even at weight 1
    with pytest.raises(ValueError):
        Hybrid(weight=1.5).fit(ds)
