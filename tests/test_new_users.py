"""The new-user ramp: the protocol's invariants, demographic popularity's backoff, the runner."""

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from leanrec.data.schema import Dataset, Events, Items
from leanrec.data.split import held_out_users, new_user_split
from leanrec.eval.new_users import (
    NewUserScores,
    ramp_markdown,
    ramp_models,
    run_ramp,
    write_ramp,
)
from leanrec.models.content import ContentRecommender
from leanrec.models.demographic import DemographicPopular
from leanrec.models.popular import MostPopular
from leanrec.models.presets import ExperimentConfig


def _protocol_order(ds):
    ev = ds.events.frame.assign(item_pos=ds.item_positions)
    return ev.sort_values(["user_id", "timestamp", "item_pos"], kind="stable")


def test_held_out_users_are_a_seeded_tenth_and_leave_training_entirely(synthetic):
    s = new_user_split(synthetic)
    users = np.unique(synthetic.events.frame["user_id"])
    expected = np.sort(users[np.random.default_rng(42).permutation(len(users))[:int(0.1 * len(users))]])
    assert np.array_equal(s.held_out, expected) and len(s.held_out) == 15
    train = s.train.events.frame
    assert not train["user_id"].isin(s.held_out).any()  # not one event, later ones included
    kept = synthetic.events.frame[~synthetic.events.frame["user_id"].isin(s.held_out)]
    assert len(train) == len(kept)  # the other users keep every event
    again = new_user_split(synthetic)
    assert np.array_equal(again.held_out, s.held_out)
    assert not np.array_equal(held_out_users(users, seed=7), s.held_out)


def test_targets_are_the_next_event_after_exactly_the_first_n(synthetic):
    s = new_user_split(synthetic, sizes=(0, 1, 3, 10, 25))
    order = _protocol_order(synthetic)
    for n, targets in s.targets.items():
        long_enough = [u for u in s.held_out if (order["user_id"] == u).sum() >= n + 1]
        assert sorted(targets.frame["user_id"]) == sorted(long_enough)
        for (_, row), seen in zip(targets.frame.iterrows(), targets.seen):
            user = order[order["user_id"] == row.user_id]
            assert seen.tolist() == user["item_pos"].tolist()[:n]  # the first n, oldest first
            assert row.item_pos == user["item_pos"].tolist()[n]  # the (n+1)-th
            assert row.timestamp == user["timestamp"].tolist()[n]
    assert len(s.targets[0]) == 15 and all(len(seen) == 0 for seen in s.targets[0].seen)
    assert len(s.targets[25]) < 15  # synthetic users have 8..30 events


def test_ramp_orders_ties_by_item_id_and_flags_them():
    items = Items.from_frame(pd.DataFrame({"item_id": [1, 2, 3, 4], "text": list("abcd")}))
    rows = [(u, i, 10.0 * u) for u in range(1, 11) if u != 5 for i in (1, 2)]
    rows += [(5, 4, 1.0), (5, 3, 1.0), (5, 2, 2.0), (5, 1, 2.0)]  # user 5: 3, 4 tied; then 1, 2 tied
    ds = Dataset(items, Events.from_frame(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])))
    seed = next(k for k in range(100) if 5 in held_out_users(np.arange(1, 11), k, 0.5))
    split = new_user_split(ds, seed=seed, fraction=0.5, sizes=(0, 1, 2, 3))
    t = {n: split.targets[n].frame.set_index("user_id").loc[5] for n in (0, 1, 2, 3)}
    assert [t[n]["item_id"] for n in (0, 1, 2, 3)] == [3, 4, 1, 2]
    assert [bool(t[n]["strictly_later"]) for n in (0, 1, 2, 3)] == [True, False, True, False]
    assert split.targets[3].seen[list(split.targets[3].frame["user_id"]).index(5)].tolist() == [2, 3, 0]


def test_bad_ramp_arguments_are_clear_errors(synthetic):
    with pytest.raises(ValueError, match="between 0 and 1"):
        new_user_split(synthetic, fraction=1.0)
    with pytest.raises(ValueError, match="non-negative integers"):
        new_user_split(synthetic, sizes=(0, -1))
    with pytest.raises(ValueError, match="cannot run"):
        ramp_models(["popular", "learned-hybrid"])
    assert ramp_models(["core", "demographic"]) == ("popular", "ease", "tfidf", "minilm", "hybrid", "demographic")


# -- demographic popularity ---------------------------------------------------------------------

def _demo_data():
    """Items 1..7; A, B: age 20 M student; C: 20 M writer; D: 30 F writer. E, F, G: profile only."""
    items = Items.from_frame(pd.DataFrame({"item_id": list(range(1, 8)), "text": list("abcdefg")}))
    events = [("A", 1), ("A", 2), ("B", 1), ("B", 2), ("C", 3), ("C", 3), ("C", 4), ("D", 4), ("D", 5), ("D", 6)]
    ev = pd.DataFrame(events, columns=["user_id", "item_id"]).assign(timestamp=np.arange(len(events), dtype=float))
    users = pd.DataFrame({"user_id": list("ABCDEFG"), "age": [20, 20, 20, 30, 20, 20, 60],
                          "gender": ["M", "M", "M", "F", "M", "M", "F"],
                          "occupation": ["student", "student", "writer", "writer", "student", "artist", "doctor"]})
    return Dataset(items, Events.from_frame(ev)), users


def _order(scores):
    """Items 1..7 grouped by equal score, best first."""
    out = []
    for value in sorted(set(scores.tolist()), reverse=True):
        out.append(sorted(int(i) + 1 for i in np.flatnonzero(scores == value)))
    return out


def test_demographic_popularity_backs_off_by_hand():
    ds, users = _demo_data()
    m = DemographicPopular(min_users=2).fit(ds, users=users)
    # E: (18-24, M, student) has A and B; F: (18-24, M, artist) has nobody -> (18-24, M): A, B, C;
    # G: (56+, F, doctor), (56+, F), (56+) have nobody -> global; H: no profile -> global;
    # D: alone in each of its groups -> global
    assert [m.chain(u) for u in "EFGHD"] == [(0, 1, 2), (1, 2), (), (), ()]
    s = m.score(list("EFGHD"))
    # E: A and B's items 1, 2 first; then by (18-24, M): 3 (C twice) > 4 (once); then global 5 = 6 > 7
    assert _order(s[0]) == [[1, 2], [3], [4], [5, 6], [7]]
    # F: (18-24, M) counts 1, 2, 3: 2 each; 4: 1; then global
    assert _order(s[1]) == [[1, 2, 3], [4], [5, 6], [7]]
    glob = [[1, 2, 3, 4], [5, 6], [7]]  # global counts 2, 2, 2, 2 (4: C and D), 1, 1, 0
    assert _order(s[2]) == _order(s[3]) == _order(s[4]) == glob
    assert _order(MostPopular().fit(ds).score(["A"])[0]) == glob
    with_table = Dataset(ds.items, ds.events, users=users)  # Dataset.users: the same model
    assert np.array_equal(DemographicPopular(min_users=2).fit(with_table).score(list("EFGHD")), s)
    split = new_user_split(with_table, seed=0, fraction=0.5)
    assert split.train.users.equals(with_table.users)  # the held-out users' profiles stay readable
    loose = DemographicPopular(min_users=1).fit(ds, users=users)
    # D alone in its group: 4, 5, 6 once each, the tie broken by the global count (4: twice)
    assert loose.chain("D") == (0, 1, 2) and _order(loose.score(["D"])[0]) == [[4], [5, 6], [1, 2, 3], [7]]
    assert clone(m).get_params() == m.get_params()


def test_demographic_popularity_says_what_it_lacks():
    ds, users = _demo_data()
    with pytest.raises(ValueError, match="needs a users table"):
        DemographicPopular().fit(ds)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['occupation'\]"):
        DemographicPopular().fit(ds, users=users.drop(columns="occupation"))
    with pytest.raises(ValueError, match="min_users"):
        DemographicPopular(min_users=0).fit(ds, users=users)


# -- scoring new users and the runner -----------------------------------------------------------

def test_new_user_scores_equal_a_fit_that_saw_the_history(synthetic):
    """Scoring a never-seen history through the live scorer gives what a model whose training
    data held that history gives (content scores depend on the history and the texts alone)."""
    s = new_user_split(synthetic)
    targets = s.targets[3]
    model = ContentRecommender(encoder="tfidf", half_life=2.0).fit(s.train)
    histories = dict(zip(targets.frame["user_id"], targets.seen))
    users = targets.frame["user_id"].tolist()[:4]
    got = NewUserScores(model, histories).score(users)
    order = _protocol_order(synthetic)
    first = order[order["user_id"].isin(users)].groupby("user_id").head(3)
    both = ContentRecommender(encoder="tfidf", half_life=2.0).fit(
        s.train.with_events(pd.concat([s.train.events.frame, first])))
    np.testing.assert_allclose(got, both.score(users), rtol=1e-5, atol=1e-6)
    pop = NewUserScores(MostPopular().fit(s.train), histories).score(users)
    assert np.array_equal(pop[0], MostPopular().fit(s.train).popularity_)


@pytest.mark.parametrize("kw", [{"encoder": "tfidf"}, {"use_text": False, "item_ids": True}])
def test_new_user_scores_of_a_sequence_model_equal_update_history(synthetic, kw):
    """A sequence model scores a never-seen history without retraining: the ramp's scorer path
    gives what ``update_history`` with that history gives (text and ID-only SASRec)."""
    from leanrec.models.sequential import SequentialRecommender

    s = new_user_split(synthetic)
    targets = s.targets[5]
    model = SequentialRecommender(pooling="sasrec", dim=16, max_len=10, max_epochs=2, patience=2, batch_size=32,
                                  seed=0, **kw).fit(s.train)
    users = targets.frame["user_id"].tolist()[:3]
    got = NewUserScores(model, dict(zip(targets.frame["user_id"], targets.seen))).score(users)
    order = _protocol_order(synthetic)
    first = order[order["user_id"].isin(users)].groupby("user_id").head(5)
    updated = model.update_history(s.train.with_events(pd.concat([s.train.events.frame, first])))
    np.testing.assert_allclose(got, updated.score(users), rtol=1e-5, atol=1e-5)


def test_run_ramp_on_synthetic_data(synthetic, tmp_path):
    users = pd.DataFrame({"user_id": np.arange(1, 151), "age": np.arange(150) % 50 + 15,
                          "gender": np.where(np.arange(150) % 2, "F", "M"), "occupation": "other"})
    cfg = ExperimentConfig(half_lives=(2, None))
    steps = []
    out = run_ramp(synthetic, ["popular", "tfidf", "demographic"], cfg, users=users, on_step=steps.append)
    rows = out["rows"]
    assert [(r["model"], r["n"]) for r in rows] == [(m, n) for m in ("popular", "tfidf", "demographic")
                                                     for n in (0, 1, 3, 5, 10)]
    for r in rows:
        assert r["n_users"] == out["split"]["targets"][str(r["n"])]
        assert 0 <= r["ndcg@10"] <= r["recall@10"] <= 1
        assert r["ndcg@10_ci"][0] <= r["ndcg@10"] <= r["ndcg@10_ci"][1]
        assert r["strictly_later"]["n_users"] <= r["n_users"]
        if r["n"] == 0:  # nothing before the first event: every target counts as strictly later
            assert r["strictly_later"] == {"n_users": r["n_users"], "ndcg@10": r["ndcg@10"],
                                           "recall@10": r["recall@10"]}
    assert out["models"]["tfidf"]["params"]["half_life"] in (2, None)
    assert len(out["models"]["tfidf"]["grid"]) == 2  # tuned on the training users' warm validation
    by = {(r["model"], r["n"]): r for r in rows}
    assert by[("tfidf", 3)]["ndcg@10"] > by[("tfidf", 0)]["ndcg@10"]  # synthetic text carries the topic
    json_path, md_path = write_ramp(out, tmp_path)
    assert json.loads(json_path.read_text())["rows"] == json.loads(json.dumps(rows))
    assert "| tfidf |" in md_path.read_text() and md_path.read_text() == ramp_markdown(out)
    assert "tfidf ranked" in steps
    with pytest.raises(ValueError, match="needs a users table"):
        run_ramp(synthetic, ["demographic"], cfg)


def test_demo_compares_with_the_reference_when_it_ran(synthetic, tmp_path):
    from leanrec.experiment import run_experiment

    cfg = ExperimentConfig(models=("popular", "ease"), protocols=("warm",), ease_lambdas=(100.0,),
                           reference="popular")
    res = run_experiment(synthetic, tmp_path / "a", cfg)
    comp = res["models"]["ease"]["warm"]["vs_reference"]
    assert comp["reference"] == "popular" and comp["all"]["n_users"] == res["models"]["ease"]["warm"]["test"]["n_users"]
    assert comp["strictly_later"]["n_users"] == res["models"]["ease"]["warm"]["test"]["strictly_later"]["n_users"]
    assert comp["all"]["ndcg@10"]["ratio"] == pytest.approx(
        res["models"]["ease"]["warm"]["test"]["ndcg@10"] / res["models"]["popular"]["warm"]["test"]["ndcg@10"])
    assert "vs_reference" not in res["models"]["popular"]["warm"]
    res = run_experiment(synthetic, tmp_path / "b", ExperimentConfig(models=("popular",), protocols=("warm",)))
    assert "vs_reference" not in res["models"]["popular"]["warm"]  # sasrec-id did not run: no comparison


def test_run_ramp_tunes_every_model_on_one_warm_split(synthetic, monkeypatch):
    import leanrec.eval.new_users as new_users
    from leanrec.eval.new_users import fit_for_ramp

    made = []
    real = new_users.temporal_leave_one_out
    monkeypatch.setattr(new_users, "temporal_leave_one_out", lambda ds: made.append(ds) or real(ds))
    cfg = ExperimentConfig(half_lives=(2, None), ease_lambdas=(30.0, 300.0))
    out = run_ramp(synthetic, ["popular", "ease", "tfidf"], cfg)
    assert len(made) == 1  # popular has no grid; ease and tfidf share the split
    split = new_user_split(synthetic, cfg.seed)
    for name in ("ease", "tfidf"):  # the same choice as a split made for the model alone
        _, params, record = fit_for_ramp(name, split.train, cfg, {})
        assert params == out["models"][name]["params"] and record["grid"] == out["models"][name]["grid"]
