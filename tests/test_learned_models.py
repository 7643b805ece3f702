"""The learned models on generated data: windows, training loop, stopping, determinism,
new items, history updates, and the learned hybrid's weights and gradient."""

import numpy as np
import pandas as pd
import pytest

from leanrec.data.schema import Dataset, Events
from leanrec.data.split import cold_start_split, temporal_leave_one_out
from leanrec.eval.evaluate import evaluate
from leanrec.models import EASE, ContentRecommender
from leanrec.models.learned_hybrid import LearnedHybrid, _softmax_ce, learn_weights
from leanrec.models.sequential import SequentialRecommender, last_window, windows


def _seq(**kw):
    params = dict(encoder="tfidf", pooling="sasrec", dim=16, max_len=10, max_epochs=6, patience=3, batch_size=32,
                  lr=5e-3)
    params.update(kw)
    return SequentialRecommender(**params)


def test_windows_make_every_event_but_the_first_a_target_once():
    seqs = [np.arange(1, 8), np.array([5]), np.array([3, 4])]
    x, y, owner = windows(seqs, max_len=3, pad=99)
    assert x.shape == y.shape == (3, 3)
    targets = sorted(y[owner == 0][y[owner == 0] >= 0].tolist())
    assert targets == list(range(2, 8))           # 1..7: every event but the first
    assert (owner == 1).sum() == 0                # one event: nothing to predict
    assert y[owner == 2].tolist() == [[-1, -1, 4]] and x[owner == 2].tolist() == [[99, 99, 3]]
    # right-aligned, newest window first; each target follows its input position
    assert x[0].tolist() == [4, 5, 6] and y[0].tolist() == [5, 6, 7]
    for xi, yi in zip(x, y):
        ok = yi >= 0
        assert (xi[ok] != 99).all()
    assert last_window(np.arange(1, 8), 3, 99).tolist() == [5, 6, 7]
    assert last_window(np.array([4]), 3, 99).tolist() == [99, 99, 4]


@pytest.mark.parametrize("pooling", ["mean", "attention", "sasrec"])
def test_training_learns_and_keeps_the_best_epoch(synthetic, pooling):
    model = _seq(pooling=pooling, max_epochs=8).fit(temporal_leave_one_out(synthetic).train)
    record = model.training_
    values = [h["valid_ndcg@10"] for h in record["history"]]
    assert record["best_valid_ndcg@10"] == max(values) > values[0]   # learned something over the untrained net
    assert record["best_epoch"] == int(np.argmax(values))
    assert record["stopped"] in ("max_epochs", "early_stopping") and record["train_cpu_seconds"] > 0
    assert record["epochs"] == len(values) - 1


def test_beats_the_frozen_content_model_on_generated_data(synthetic):
    split = temporal_leave_one_out(synthetic)
    frozen = evaluate(ContentRecommender(encoder="tfidf", half_life=4).fit(split.train), split.valid)
    learned = evaluate(_seq(max_epochs=30, patience=5).fit(split.train), split.valid)
    assert learned.metrics["ndcg@10"] > frozen.metrics["ndcg@10"]


def test_same_seed_same_model_other_seed_other_model(synthetic):
    a = _seq(max_epochs=2).fit(synthetic).score([1, 2, 3])
    b = _seq(max_epochs=2).fit(synthetic).score([1, 2, 3])
    c = _seq(max_epochs=2, seed=7).fit(synthetic).score([1, 2, 3])
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_time_budget_stops_training(synthetic):
    model = _seq(max_epochs=1000, patience=1000, time_budget_s=0.05).fit(synthetic)
    assert model.training_["stopped"] == "time_budget" and model.training_["epochs"] < 1000


def test_bf16_autocast_trains(synthetic):
    model = _seq(max_epochs=2, precision="bf16").fit(synthetic)
    assert model.training_["precision"] == "bf16" and np.isfinite(model.score([1, 2])).all()


def test_new_items_score_from_text_alone(synthetic):
    split = cold_start_split(synthetic)
    model = _seq(item_ids=True).fit(split.train)
    cold = split.candidates
    s = model.score(split.test.frame["user_id"].to_numpy()[:5])[:, cold]
    assert np.isfinite(s).all() and s.std() > 0
    # ID embeddings exist only for items with training events
    assert not model.net_.has_events[cold].any()
    assert evaluate(model, split.valid, cold).metrics["ndcg@10"] > 3 * 10 / len(cold) / 10


def test_update_history_scores_new_events_without_retraining(synthetic):
    model = _seq(max_epochs=2).fit(synthetic)
    ev = synthetic.events.frame
    extra = pd.DataFrame({"user_id": [1, 9999], "item_id": [5, 5], "timestamp": [ev["timestamp"].max() + 1] * 2,
                          "value": [1.0, 1.0], "kind": ["view", "view"]})
    updated = model.update_history(Dataset(synthetic.items, Events.from_frame(pd.concat([ev, extra]))))
    assert updated.net_ is model.net_
    assert not np.allclose(updated.score([1]), model.score([1]))
    assert (model.score([9999]) == 0).all() and np.isfinite(updated.score([9999])).all()
    assert updated.score([9999]).std() > 0
    last = synthetic.items.ids[-1]
    other = Dataset(synthetic.items.__class__.from_frame(synthetic.items.frame.iloc[:-1]),
                    Events.from_frame(ev[ev["item_id"] != last]))
    with pytest.raises(ValueError, match="catalogue"):
        model.update_history(other)


@pytest.mark.parametrize("bad, match", [
    ({"pooling": "gru"}, "pooling"), ({"precision": "fp8"}, "precision"), ({"dim": 0}, "dim"),
    ({"dim": 10, "heads": 3}, "divisible"), ({"dropout": 1.0}, "dropout"), ({"lr": 0}, "lr"),
    ({"loss": "bpr"}, "loss"), ({"use_text": False}, "item_ids"),
    ({"loss": "sampled", "num_negatives": 0}, "num_negatives"),
])
def test_bad_parameters_fail_with_the_parameter_named(synthetic, bad, match):
    with pytest.raises(ValueError, match=match):
        _seq(**bad).fit(synthetic)


def test_softmax_ce_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(3, 6, 9))
    allowed = rng.random((6, 9)) > 0.2
    target = np.array([0, 1, 2, 3, 4, 5])
    allowed[np.arange(6), target] = True
    offset = np.where(rng.random(9) > 0.7, 0.5, 0.0)[None, :]
    w = np.array([0.3, -0.2, 0.8])
    _, grad = _softmax_ce(w, Z, offset, allowed, target, 0.01)
    eps = 1e-6
    numeric = [(_softmax_ce(w + eps * e, Z, offset, allowed, target, 0.01)[0]
                - _softmax_ce(w - eps * e, Z, offset, allowed, target, 0.01)[0]) / (2 * eps) for e in np.eye(3)]
    assert np.allclose(grad, numeric, atol=1e-6)


def test_learned_weights_find_the_informative_component():
    rng = np.random.default_rng(1)
    users, items = 300, 40
    target = rng.integers(0, items, users)
    useful = rng.normal(size=(users, items))
    useful[np.arange(users), target] += 3.0       # this component knows the answer
    noise = rng.normal(size=(users, items))       # this one does not
    against = -useful + rng.normal(size=(users, items))   # this one points the wrong way
    w = learn_weights(np.stack([useful, noise, against]), np.ones((users, items), bool), target)
    assert w[0] > 1.0 and abs(w[1]) < 0.2 * w[0] and w[2] == 0.0   # never a negative weight


def test_learned_hybrid_uses_text_components_only_for_new_items(synthetic):
    split = cold_start_split(synthetic)
    model = LearnedHybrid([("ease", EASE(lam=10.0)), ("tfidf", ContentRecommender(encoder="tfidf", half_life=2))])
    model.fit(split.train)
    assert model.new_item_weights_["ease"] == 0.0 and model.new_item_weights_["tfidf"] > 0
    assert model.weights_["ease"] > 0
    # on new (cold) items the fused score is the text component's z-score times its weight
    users = split.test.frame["user_id"].to_numpy()[:4]
    cold = split.candidates
    from leanrec.models.hybrid import zscore

    expected = model.new_item_weights_["tfidf"] * zscore(model.components_[1][1].score(users))[:, cold]
    assert np.allclose(model.score(users)[:, cold], expected, atol=1e-5)


def test_learned_hybrid_from_fitted_and_component_checks(synthetic):
    split = temporal_leave_one_out(synthetic)
    parts = {"ease": EASE(lam=10.0), "tfidf": ContentRecommender(encoder="tfidf", half_life=2)}
    on_train = [(n, m.fit(split.train)) for n, m in
                {"ease": EASE(lam=10.0), "tfidf": ContentRecommender(encoder="tfidf", half_life=2)}.items()]
    on_both = [(n, m.fit(split.train_valid)) for n, m in parts.items()]
    model = LearnedHybrid.from_fitted(on_train, split.valid, on_both)
    fused = evaluate(model, split.test).metrics["ndcg@10"]
    assert fused >= 0.9 * max(evaluate(m, split.test).metrics["ndcg@10"] for _, m in on_both)
    with pytest.raises(ValueError, match="do not match"):
        model.with_components(on_both[:1])
    with pytest.raises(ValueError, match="content"):
        LearnedHybrid([("ease", EASE())]).fit(synthetic)
    with pytest.raises(ValueError, match="distinct"):
        LearnedHybrid([("a", EASE()), ("a", ContentRecommender(encoder="tfidf"))]).fit(synthetic)


def test_attention_pooling_starts_as_the_decayed_mean():
    import torch

    from leanrec.models.seqnet import SeqNet

    torch.manual_seed(0)
    text, has_events = torch.randn(30, 8), torch.ones(30, dtype=torch.bool)
    attention = SeqNet(text, has_events, pooling="attention", dim=4, max_len=6, dropout=0.0, half_life=3.0).eval()
    mean = SeqNet(text, has_events, pooling="mean", dim=4, max_len=6, dropout=0.0, half_life=3.0).eval()
    mean.proj.load_state_dict(attention.proj.state_dict())
    seq = torch.tensor([[30, 30, 1, 2, 3, 4], [5, 6, 7, 8, 9, 10]])   # 30 = padding
    with torch.no_grad():
        table = attention.item_table()
        a, m = attention.user_states(seq, table), mean.user_states(seq, table)
    assert torch.allclose(a[0, 2:], m[0, 2:], atol=1e-6) and torch.allclose(a[1], m[1], atol=1e-6)


def test_sampled_softmax_and_id_only_models_learn(synthetic):
    """The training loop's other losses and item towers: sampled softmax (uniform and
    popularity-weighted negatives) and the ID-only SASRec each learn over the untrained net
    and keep their best epoch; the ID-only model gives an item without training events no
    score of its own."""
    train = temporal_leave_one_out(synthetic).train
    for kw in ({"loss": "sampled", "num_negatives": 16}, {"loss": "sampled", "num_negatives": 16, "sampling_alpha": 1.0},
               {"use_text": False, "item_ids": True}):
        model = _seq(max_epochs=8, **kw).fit(train)
        values = [h["valid_ndcg@10"] for h in model.training_["history"]]
        assert max(values) > values[0], kw
        assert model.training_["cpu_seconds_to_best"] == model.training_["history"][model.training_["best_epoch"]]["cpu_seconds"]
    assert model.encoder_ is None and not model.scores_new_items
    cold = np.flatnonzero(model.history_.item_counts == 0)
    if len(cold):
        assert np.all(model.item_table_[cold] == 0)
