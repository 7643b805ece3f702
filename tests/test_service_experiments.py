"""Online experiments: the statistics and interleaving (pure), the service's experiment flow
over HTTP (FastAPI TestClient, a real SQLite file, the word-hash encoder) and on a real
PostgreSQL, and a replay on generated data: a stronger arm is found, identical arms are not."""

from __future__ import annotations

import json
import math
import sqlite3
import time

import numpy as np
import pytest
from _service import HashEncoder, write_keys
from fastapi.testclient import TestClient
from test_service import CATALOGUE as BASE_CATALOGUE
from test_service import R, W

from leanrec.service import ServiceConfig, create_app
from leanrec.service.core import RecService
from leanrec.service.errors import Conflict, InputError, NotFound
from leanrec.service.experiments import (
    Arm,
    Experiment,
    ab_report,
    attribute,
    check_arms,
    interleave_report,
    ratio_stats,
    srm_check,
    team_draft,
    unit_hash,
)

CATALOGUE = {**BASE_CATALOGUE, "notting": "Notting Hill romantic comedy London"}


# -- statistics and interleaving (pure) ------------------------------------------------------
def test_assignment_is_deterministic_and_follows_the_shares():
    exp = Experiment("exp-1", "ab", [Arm("control", 0.3), Arm("treatment", 0.7)])
    users = [f"user-{k}" for k in range(2000)]
    arms = [exp.assign(u).name for u in users]
    again = Experiment.from_dict(exp.to_dict())  # e.g. after a restart: same arms, no state needed
    assert [again.assign(u).name for u in users] == arms
    n = arms.count("control")
    assert abs(n - 600) < 4 * math.sqrt(2000 * 0.3 * 0.7), n  # within chance (4 sigma)
    assert unit_hash("exp-1:user-0") == unit_hash("exp-1:user-0") and 0 <= unit_hash("x") < 1
    # another experiment id reshuffles users (no carry-over between experiments)
    other = Experiment("exp-2", "ab", [Arm("control", 0.3), Arm("treatment", 0.7)])
    assert [other.assign(u).name for u in users] != arms


@pytest.mark.parametrize("mode, arms, loc", [
    ("ab", [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.6}], ["body", "arms"]),
    ("ab", [{"name": "a", "share": 0.0}, {"name": "b", "share": 1.0}], ["body", "arms", 0, "share"]),
    ("ab", [{"name": "a", "share": 1.0}, {"name": "b"}], ["body", "arms", 1, "share"]),
    ("ab", [{"name": "a"}, {"name": "a"}], ["body", "arms", 1, "name"]),
    ("ab", [{"name": "a", "share": 1.0}], ["body", "arms"]),
    ("interleave", [{"name": "a"}, {"name": "b"}, {"name": "c"}], ["body", "arms"]),
])
def test_arm_checks_name_the_field(mode, arms, loc):
    errors = check_arms(mode, arms)
    assert errors and errors[0]["loc"] == loc, errors
    assert check_arms("ab", [{"name": "a", "share": 0.25}, {"name": "b", "share": 0.75 + 5e-7}]) == []


def test_delta_method_interval_matches_known_cases():
    # one exposure per user: the delta method is the binomial variance p(1-p)/(N-1)
    c = np.array([1] * 30 + [0] * 70, float)
    r, var = ratio_stats(c, np.ones(100))
    assert r == 0.3 and var == pytest.approx(0.3 * 0.7 / 99)
    # a hand-computed case with repeated exposures: 3 users, (clicked, shown) = (1,2), (0,1), (2,3)
    c, n = np.array([1.0, 0.0, 2.0]), np.array([2.0, 1.0, 3.0])
    R = 3 / 6
    sc, sn, scn = np.var(c, ddof=1), np.var(n, ddof=1), np.cov(c, n, ddof=1)[0, 1]
    r, var = ratio_stats(c, n)
    assert r == R and var == pytest.approx((sc - 2 * R * scn + R * R * sn) / (3 * n.mean() ** 2))
    # clustered data (each user has their own click rate): the interval covers the true CTR
    # about 95% of the time, where the naive binomial interval over exposures is far too narrow
    rng = np.random.default_rng(0)
    covered = naive = 0
    sims = 400
    for _ in range(sims):
        shown = rng.integers(1, 20, 300)
        rate = rng.beta(1, 4, 300)  # true CTR = E[n·rate]/E[n] = 0.2 (rate independent of n)
        clicked = rng.binomial(shown, rate)
        r, var = ratio_stats(clicked, shown)
        covered += abs(r - 0.2) <= 1.96 * math.sqrt(var)
        naive += abs(r - 0.2) <= 1.96 * math.sqrt(r * (1 - r) / shown.sum())
    assert 0.92 <= covered / sims <= 0.98, covered / sims
    assert naive / sims < 0.85, naive / sims


def test_ab_report_difference_p_value_and_srm():
    arms = [Arm("control", 0.5), Arm("treatment", 0.5)]
    rows = [(f"c{u}", "control", int(u < 100)) for u in range(1000)]
    rows += [(f"t{u}", "treatment", int(u < 150)) for u in range(1000)]
    rep = ab_report(arms, rows)
    a, b = rep["arms"]
    assert (a["users"], a["exposures"], a["clicks"], a["ctr"]) == (1000, 1000, 100, 0.1)
    assert b["ctr"] == 0.15 and a["ctr_ci95"][0] < 0.1 < a["ctr_ci95"][1]
    cmp = rep["comparisons"][0]
    assert cmp["diff"] == pytest.approx(0.05) and cmp["diff_ci95"][0] > 0
    # the test's variance is the pooled one under H0 (p = 0.125 over the 2000 users, ddof 1)
    se0 = math.sqrt(0.125 * 0.875 * 2000 / 1999 * (1 / 1000 + 1 / 1000))
    assert cmp["p_value"] == pytest.approx(math.erfc(0.05 / se0 / math.sqrt(2)))
    assert cmp["p_value"] < 0.01 and cmp["significant"] and "treatment has the higher CTR" in rep["verdict"]
    assert rep["srm"]["mismatch"] is False
    json.dumps(rep, allow_nan=False)  # JSON-safe
    # 60/40 split of a 50/50 experiment: a sample-ratio mismatch, and the verdict says so
    srm = srm_check([600, 400], [0.5, 0.5])
    assert srm["chi2"] == pytest.approx(40.0) and srm["p_value"] < 1e-9 and srm["mismatch"]
    skewed = ab_report(arms, [(f"c{u}", "control", 0) for u in range(600)] +
                       [(f"t{u}", "treatment", 0) for u in range(400)])
    assert skewed["srm"]["mismatch"] and skewed["verdict"].startswith("sample-ratio mismatch")
    assert not srm_check([510, 490], [0.5, 0.5])["mismatch"]
    # no clicks anywhere: no difference, p = 1, and empty arms report None, not NaN
    flat = ab_report(arms, [("x", "control", 0), ("y", "treatment", 0), ("z", "treatment", 0), ("w", "control", 0)])
    assert flat["comparisons"][0]["p_value"] == 1.0
    empty = ab_report(arms, [])
    assert empty["arms"][0]["ctr"] is None and empty["comparisons"][0]["p_value"] is None
    json.dumps(empty, allow_nan=False)


def test_interleave_report_counts_wins_ties_and_sign_test():
    arms = [Arm("a", 0.5), Arm("b", 0.5)]
    rows = [("u1", 1, 0)] * 30 + [("u2", 0, 1)] * 10 + [("u3", 1, 1)] * 5 + [("u4", 0, 0)] * 55
    rep = interleave_report(arms, rows)
    assert rep["exposures"] == 100 and rep["wins"] == {"a": 30, "b": 10} and rep["ties"] == 5
    assert rep["preference"] == pytest.approx(20 / 45)
    from scipy.stats import binomtest

    assert rep["p_value"] == pytest.approx(binomtest(30, 40).pvalue) and rep["significant"]
    assert rep["verdict"].startswith("a is preferred")
    even = interleave_report(arms, [("u", 1, 0)] * 10 + [("v", 0, 1)] * 10)
    assert even["p_value"] == 1.0 and not even["significant"]


def test_team_draft_properties():
    a = [f"a{i}" for i in range(20)]
    b = [f"b{i}" for i in range(10)] + a[:10]
    for k in range(1, 21):
        for seed in range(20):
            out = team_draft(a, b, k, f"s{seed}")
            items = [i for i, _ in out]
            assert len(items) == len(set(items)) == k  # no duplicates
            na = sum(t == "A" for _, t in out)
            assert na in (k // 2, (k + 1) // 2)  # each team gets floor or ceil of k/2
            assert out == team_draft(a, b, k, f"s{seed}")  # deterministic per seed
            # each team's picks keep its ranking's order
            picks_a, picks_b = [i for i, t in out if t == "A"], [i for i, t in out if t == "B"]
            assert picks_a == sorted(picks_a, key=a.index) and picks_b == sorted(picks_b, key=b.index)
    # identical rankings: all k items still listed, split between the teams by the coins
    out = team_draft(a, a, 10, "same")
    assert [i for i, _ in out] == a[:10] and {t for _, t in out} == {"A", "B"}
    teams = {tuple(t for _, t in team_draft(a, a, 10, f"x{s}")) for s in range(30)}
    assert len(teams) > 1  # the coins differ between exposures
    # a short ranking: the other team fills the list
    for seed in range(10):
        assert {i for i, _ in team_draft(["x"], a, 5, f"s{seed}")} == {"x", "a0", "a1", "a2", "a3"}
    assert team_draft([], [], 5, "s") == []


def test_attribution_rules():
    windows, kinds = {"e": 100.0, "f": 100.0}, {"e": ("click",), "f": ("click", "buy")}
    exposures = [
        {"id": 1, "experiment_id": "e", "user_id": "u", "arm": "A", "items": ["x", "y"], "teams": None, "ts": 1000.0},
        {"id": 2, "experiment_id": "e", "user_id": "u", "arm": "A", "items": ["x"], "teams": None, "ts": 1050.0},
        {"id": 3, "experiment_id": "f", "user_id": "u", "arm": None, "items": ["y", "x"], "teams": ["p", "q"],
         "ts": 1000.0},
    ]

    def click(eid, item, ts, kind="click", user="u"):
        return {"event_id": eid, "user_id": user, "item_id": item, "ts": ts, "kind": kind}

    credited: set = set()
    rows = attribute([click(10, "x", 1060.0)], exposures, credited, windows, kinds)
    # latest exposure of each experiment wins; interleaving credits the item's team
    assert {(r["experiment_id"], r["exposure_id"], r["arm"]) for r in rows} == {("e", 2, "A"), ("f", 3, "q")}
    assert attribute([click(11, "x", 1070.0)], exposures, credited, windows, kinds) == []  # credited once
    assert attribute([click(12, "y", 1200.0)], exposures, credited, windows, kinds) == []  # window over
    assert attribute([click(13, "y", 990.0)], exposures, credited, windows, kinds) == []  # before the list
    assert attribute([click(14, "z", 1010.0)], exposures, credited, windows, kinds) == []  # not shown
    assert attribute([click(15, "y", 1010.0, "view")], exposures, credited, windows, kinds) == []  # not a click kind
    assert attribute([click(16, "y", 1010.0, user="v")], exposures, credited, windows, kinds) == []  # another user
    rows = attribute([click(17, "y", 1010.0, "buy")], exposures, credited, windows, kinds)
    assert [(r["experiment_id"], r["arm"]) for r in rows] == [("f", "p")]  # 'buy' counts for f only


# -- the service -------------------------------------------------------------------------------
def _config(tmp_path, db=None, **overrides) -> ServiceConfig:
    return ServiceConfig(db=db or f"sqlite:///{tmp_path / 'store.db'}", data_dir=str(tmp_path / "data"),
                         api_key_file=str(write_keys(tmp_path)), **overrides)


def make_client(tmp_path, db=None) -> TestClient:
    return TestClient(create_app(_config(tmp_path, db), encoder=HashEncoder(), start_in_background=False))


def _seed(c: TestClient) -> None:
    r = c.post("/items", headers=W, json=[{"item_id": i, "text": t} for i, t in CATALOGUE.items()])
    assert r.status_code == 200, r.text
    r = c.post("/events", headers=W, json=[
        {"user_id": f"u{k}", "item_id": ["heat", "toy", "alien"][k % 3], "timestamp": 1_700_000_000}
        for k in range(40)])
    assert r.status_code == 200, r.text


@pytest.fixture
def client(tmp_path):
    with make_client(tmp_path) as c:
        _seed(c)
        yield c


def db_rows(tmp_path, sql):
    with sqlite3.connect(tmp_path / "store.db") as conn:
        return conn.execute(sql).fetchall()


def _folders(tmp_path):
    """An EASE and a popularity model trained by the library on a small generated data set."""
    from leanrec.data.synth import make_dataset
    from leanrec.models import EASE, MostPopular
    from leanrec.models.persist import save_model

    ds = make_dataset(n_users=60, n_items=40, seed=5)
    return (save_model(EASE(lam=30).fit(ds), tmp_path / "ease", name="ease"),
            save_model(MostPopular().fit(ds), tmp_path / "popular", name="popular"))


def test_create_validate_list_and_auth(client, tmp_path):
    body = {"id": "exp-1", "arms": [{"name": "control"}, {"name": "treatment"}]}
    assert client.post("/experiments", json=body).status_code == 401
    r = client.post("/experiments", json=body, headers=R)
    assert r.status_code == 403 and "scope 'read'" in r.json()["detail"]
    r = client.post("/experiments", json=body, headers=W)
    assert r.status_code == 201, r.text
    exp = r.json()
    assert exp["mode"] == "ab" and exp["status"] == "running" and [a["share"] for a in exp["arms"]] == [0.5, 0.5]
    assert exp["attribution_window_s"] == 86400 and exp["click_kinds"] == ["click", "purchase"]
    assert client.post("/experiments", json=body, headers=W).status_code == 409  # ids are never reused
    assert client.get("/experiments").json()["experiments"] == [exp]  # reads are open by default
    assert client.get("/experiments/exp-1", headers=R).json() == exp
    assert client.get("/experiments/nope").status_code == 404
    assert client.get("/experiments/nope/report").status_code == 404
    assert client.post("/experiments/exp-1/stop", headers=R).status_code == 403
    for bad, loc in [
        ({"id": "x", "arms": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.6}]}, ["body", "arms"]),
        ({"id": "x", "arms": [{"name": "a", "share": -1}, {"name": "b", "share": 2}]}, ["body", "arms", 0, "share"]),
        ({"id": "x", "mode": "interleave", "arms": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}, ["body", "arms"]),
        ({"id": "x", "mode": "bandit", "arms": [{"name": "a"}, {"name": "b"}]}, ["body", "mode"]),
        ({"id": "has space", "arms": [{"name": "a"}, {"name": "b"}]}, ["body", "id"]),
        ({"id": "x", "arms": [{"name": "a"}, {"name": "b"}], "attribution_window_s": 0},
         ["body", "attribution_window_s"]),
        ({"id": "x", "arms": [{"name": "a"}, {"name": "b"}], "click_kinds": []}, ["body", "click_kinds"]),
        ({"id": "x", "arms": [{"name": "a"}, {"name": "b", "model": str(tmp_path / "no-such-folder")}]},
         ["body", "arms", 1, "model"]),
        ({"id": "x", "arms": [{"name": "a"}, {"name": "b"}], "colour": 1}, ["body", "colour"]),
    ]:
        r = client.post("/experiments", json=bad, headers=W)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"][0]["loc"] == loc, (bad, r.json())
    assert [e["id"] for e in client.get("/experiments").json()["experiments"]] == ["exp-1"]  # nothing stored
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/experiments", "/experiments/{experiment_id}", "/experiments/{experiment_id}/stop",
                 "/experiments/{experiment_id}/report"):
        assert path in paths
    assert "arms" in paths["/experiments"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "experiment" in {p["name"] for p in paths["/users/{user_id}/recommendations"]["get"]["parameters"]}


def test_arm_needing_another_encoder_is_refused_naming_the_arm(client, tmp_path):
    ease, _ = _folders(tmp_path)
    meta = json.loads((ease / "leanrec_model.json").read_text())
    meta["encoder"] = {"name": "some-other-encoder", "backend": "torch", "precision": "fp32"}
    (ease / "leanrec_model.json").write_text(json.dumps(meta))
    r = client.post("/experiments", headers=W, json={"id": "enc", "arms": [
        {"name": "content"}, {"name": "needs-other", "model": str(ease)}]})
    assert r.status_code == 422
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "arms", 1, "model"] and "'needs-other'" in err["msg"] and "encoder" in err["msg"]


def test_exposures_clicks_and_attribution(client, tmp_path):
    ease, popular = _folders(tmp_path)
    r = client.post("/experiments", headers=W, json={
        "id": "ab", "attribution_window_s": 600,
        "arms": [{"name": "pop", "share": 0.5, "model": str(popular)}, {"name": "ease", "share": 0.5,
                                                                          "model": str(ease)}]})
    assert r.status_code == 201, r.text
    plain = client.get("/users/u0/recommendations", params={"k": 3}).json()
    assert "experiment" not in plain  # without the parameter nothing changes and nothing is logged
    assert db_rows(tmp_path, "SELECT count(*) FROM exposures") == [(0,)]
    exp = Experiment.from_dict(client.get("/experiments/ab").json())
    served = {}
    for k in range(20):
        user = f"u{k}"
        body = client.get(f"/users/{user}/recommendations", params={"k": 3, "experiment": "ab"}, headers=W).json()
        assert body["experiment"]["id"] == "ab" and body["experiment"]["mode"] == "ab"
        assert body["experiment"]["arm"] == exp.assign(user).name  # the documented hash, nothing else
        served[user] = body
    again = client.get("/users/u0/recommendations", params={"k": 3, "experiment": "ab"}, headers=W).json()
    assert again["experiment"]["arm"] == served["u0"]["experiment"]["arm"]  # stable
    assert again["experiment"]["exposure_id"] != served["u0"]["experiment"]["exposure_id"]
    rows = db_rows(tmp_path, "SELECT id, experiment_id, user_id, arm, items FROM exposures ORDER BY id")
    assert len(rows) == 21
    first = rows[0]
    assert first[:4] == (served["u0"]["experiment"]["exposure_id"], "ab", "u0", served["u0"]["experiment"]["arm"])
    assert json.loads(first[4]) == [i["item_id"] for i in served["u0"]["items"]]
    # u1 clicks its second item: attributed to its (only) exposure; a repeat click is not counted twice
    now = time.time()
    item = served["u1"]["items"][1]["item_id"]
    assert client.post("/events", headers=W, json={"user_id": "u1", "item_id": item, "kind": "click"}).status_code == 200
    assert client.post("/events", headers=W, json={"user_id": "u1", "item_id": item, "kind": "click"}).status_code == 200
    att = db_rows(tmp_path, "SELECT experiment_id, exposure_id, arm, user_id, item_id FROM attributions")
    assert att == [("ab", served["u1"]["experiment"]["exposure_id"], served["u1"]["experiment"]["arm"], "u1", item)]
    # not attributed: outside the window, before the list, another kind, an item not shown
    u2 = [i["item_id"] for i in served["u2"]["items"]]
    not_shown = next(i for i in CATALOGUE if i not in u2)
    for e in [{"user_id": "u2", "item_id": u2[0], "kind": "click", "timestamp": now + 3600},
              {"user_id": "u2", "item_id": u2[1], "kind": "click", "timestamp": now - 3600},
              {"user_id": "u2", "item_id": u2[2], "kind": "view"},
              {"user_id": "u2", "item_id": not_shown, "kind": "click"}]:
        assert client.post("/events", headers=W, json=e).status_code == 200
    assert db_rows(tmp_path, "SELECT count(*) FROM attributions") == [(1,)]
    # a purchase (a default click kind) counts; a rejected batch stores neither events nor credit
    n_events = db_rows(tmp_path, "SELECT count(*) FROM events")
    r = client.post("/events", headers=W, json=[{"user_id": "u3", "item_id": served["u3"]["items"][0]["item_id"],
                                                 "kind": "purchase"}, {"user_id": "u3", "item_id": "missing"}])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "events", 1, "item_id"]
    assert db_rows(tmp_path, "SELECT count(*) FROM events") == n_events
    assert db_rows(tmp_path, "SELECT count(*) FROM attributions") == [(1,)]
    r = client.post("/events", headers=W, json={"user_id": "u3", "item_id": served["u3"]["items"][0]["item_id"],
                                                "kind": "purchase"})
    assert r.status_code == 200
    rep = client.get("/experiments/ab/report", headers=R).json()
    assert rep["mode"] == "ab" and rep["experiment"]["id"] == "ab" and rep["alpha"] == 0.05
    arms = {a["name"]: a for a in rep["arms"]}
    assert sum(a["users"] for a in arms.values()) == 20 and sum(a["exposures"] for a in arms.values()) == 21
    assert sum(a["clicks"] for a in arms.values()) == 2
    assert arms[served["u1"]["experiment"]["arm"]]["clicked_exposures"] >= 1
    assert set(rep["comparisons"][0]) >= {"diff", "diff_ci95", "p_value"} and "chi2" in rep["srm"]
    assert isinstance(rep["verdict"], str) and rep["verdict"]
    # the report is aggregated in SQL; it equals the report from every exposure row
    svc, exp = client.app.state.service, Experiment.from_dict(rep["experiment"])
    per_exposure = [(u, arm, sum(c.values())) for _, u, arm, c in svc.store.exposure_outcomes("ab")]
    assert {k: v for k, v in rep.items() if k != "experiment"} == json.loads(json.dumps(ab_report(exp.arms, per_exposure)))
    # unknown experiment: 404; bad k still 422
    r = client.get("/users/u1/recommendations", params={"experiment": "nope"}, headers=W)
    assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_interleaving_over_http(client, tmp_path):
    ease, popular = _folders(tmp_path)
    r = client.post("/experiments", headers=W, json={"id": "il", "mode": "interleave", "arms": [
        {"name": "ease", "model": str(ease)}, {"name": "pop", "model": str(popular)}]})
    assert r.status_code == 201, r.text
    body = client.get("/users/u1/recommendations", params={"k": 6, "experiment": "il"}, headers=W).json()
    assert body["experiment"]["mode"] == "interleave" and "arm" not in body["experiment"]
    items = body["items"]
    assert len(items) == 6 and len({i["item_id"] for i in items}) == 6
    teams = [i["team"] for i in items]
    assert set(teams) <= {"ease", "pop"} and teams.count("ease") == 3
    stored = db_rows(tmp_path, "SELECT items, teams FROM exposures")
    assert [json.loads(x) for x in stored[0]] == [[i["item_id"] for i in items], teams]
    clicked = items[0]
    client.post("/events", headers=W, json={"user_id": "u1", "item_id": clicked["item_id"], "kind": "click"})
    assert db_rows(tmp_path, "SELECT arm FROM attributions") == [(clicked["team"],)]
    rep = client.get("/experiments/il/report").json()
    assert rep["mode"] == "interleave" and rep["wins"] == {"ease": int(clicked["team"] == "ease"),
                                                           "pop": int(clicked["team"] == "pop")}
    assert rep["exposures"] == 1 and rep["ties"] == 0
    svc, exp = client.app.state.service, Experiment.from_dict(rep["experiment"])
    rows = [(u, c.get("ease", 0), c.get("pop", 0)) for _, u, _, c in svc.store.exposure_outcomes("il")]
    assert {k: v for k, v in rep.items() if k != "experiment"} == json.loads(json.dumps(interleave_report(exp.arms, rows)))


def test_restart_keeps_experiments_and_stop(tmp_path):
    with make_client(tmp_path) as c:
        _seed(c)
        assert c.post("/experiments", headers=W, json={"id": "keep", "arms": [
            {"name": "a", "share": 0.2}, {"name": "b", "share": 0.8}]}).status_code == 201
        first = {f"u{k}": c.get(f"/users/u{k}/recommendations", params={"experiment": "keep"}, headers=W).json()["experiment"]
                 for k in range(10)}
        item = c.get("/users/u0/recommendations", params={"experiment": "keep", "k": 2}, headers=W).json()["items"][0]
        c.post("/events", headers=W, json={"user_id": "u0", "item_id": item["item_id"], "kind": "click"})
        before = c.get("/experiments/keep/report").json()
    with make_client(tmp_path) as c:  # a new process would see the same: all state is in the store
        assert c.get("/experiments/keep").json()["arms"][1] == {"name": "b", "share": 0.8, "model": None}
        assert c.get("/experiments/keep/report").json() == before
        for user, tag in first.items():
            now = c.get(f"/users/{user}/recommendations", params={"experiment": "keep"}, headers=W).json()["experiment"]
            assert now["arm"] == tag["arm"] and now["exposure_id"] > tag["exposure_id"]
        r = c.post("/experiments/keep/stop", headers=W)
        assert r.status_code == 200 and r.json()["status"] == "stopped" and r.json()["stopped_at"] is not None
        assert c.post("/experiments/keep/stop", headers=W).json() == r.json()  # idempotent
        r = c.get("/users/u1/recommendations", params={"experiment": "keep"}, headers=W)
        assert r.status_code == 409 and "stopped" in r.json()["detail"]
        assert c.get("/users/u1/recommendations").status_code == 200
        exposures = c.get("/experiments/keep/report").json()["exposures"]
        assert exposures == before["exposures"] + len(first)
        # clicks after the stop are not attributed
        n = db_rows(tmp_path, "SELECT count(*) FROM attributions")
        shown = json.loads(db_rows(tmp_path, "SELECT items FROM exposures ORDER BY id DESC LIMIT 1")[0][0])
        c.post("/events", headers=W, json={"user_id": "u9", "item_id": shown[0], "kind": "click"})
        assert db_rows(tmp_path, "SELECT count(*) FROM attributions") == n
    with make_client(tmp_path) as c:
        assert c.get("/experiments/keep").json()["status"] == "stopped"


def _core_flow(svc: RecService) -> None:
    """The experiment flow through RecService, whatever the database."""
    svc.upsert_items([{"item_id": i, "text": t, "fields": {}} for i, t in CATALOGUE.items()])
    svc.add_events([{"user_id": f"u{k}", "item_id": "heat", "ts": 1.7e9, "kind": "view", "value": None}
                    for k in range(10)])
    with pytest.raises(InputError) as err:
        svc.create_experiment({"id": "x", "mode": "ab", "arms": [{"name": "a", "share": 0.3},
                                                                 {"name": "b", "share": 0.3}]})
    assert err.value.errors[0]["loc"] == ["body", "arms"]
    svc.create_experiment({"id": "pg", "mode": "ab", "arms": [{"name": "a"}, {"name": "b"}]})
    svc.create_experiment({"id": "pg-il", "mode": "interleave", "arms": [{"name": "a"}, {"name": "b"}]})
    with pytest.raises(Conflict):
        svc.create_experiment({"id": "pg", "mode": "ab", "arms": [{"name": "a"}, {"name": "b"}]})
    with pytest.raises(NotFound):
        svc.recommend("u0", 3, experiment="nope")
    lists = {f"u{k}": svc.recommend(f"u{k}", 3, experiment="pg") for k in range(10)}
    il = svc.recommend("u0", 4, experiment="pg-il")
    assert len(il["items"]) == 4 and {i["team"] for i in il["items"]} <= {"a", "b"}
    now = time.time()
    svc.add_events([{"user_id": u, "item_id": body["items"][0]["item_id"], "ts": now, "kind": "click", "value": None}
                    for u, body in lists.items() if u in ("u0", "u1", "u2")])
    rep = svc.experiment_report("pg")
    assert sum(a["users"] for a in rep["arms"]) == 10 and sum(a["clicks"] for a in rep["arms"]) == 3
    assert svc.experiment_report("pg-il")["exposures"] == 1
    svc.stop_experiment("pg")
    with pytest.raises(Conflict):
        svc.recommend("u0", 3, experiment="pg")


def test_core_flow_on_sqlite(tmp_path):
    svc = RecService(_config(tmp_path), encoder=HashEncoder()).start()
    try:
        _core_flow(svc)
    finally:
        svc.stop()
    svc = RecService(_config(tmp_path), encoder=HashEncoder()).start()
    try:
        assert {e["id"]: e["status"] for e in svc.experiments()} == {"pg": "stopped", "pg-il": "running"}
    finally:
        svc.stop()


@pytest.mark.slow
def test_core_flow_on_postgres(tmp_path):
    from _postgres import server_or_skip

    server = server_or_skip(tmp_path)
    try:
        svc = RecService(_config(tmp_path, server.url), encoder=HashEncoder()).start()
        try:
            _core_flow(svc)
        finally:
            svc.stop()
        svc = RecService(_config(tmp_path, server.url), encoder=HashEncoder()).start()
        try:
            assert {e["id"]: e["status"] for e in svc.experiments()} == {"pg": "stopped", "pg-il": "running"}
            assert sum(a["clicks"] for a in svc.experiment_report("pg")["arms"]) == 3
        finally:
            svc.stop()
    finally:
        server.stop()


# -- replay ------------------------------------------------------------------------------------


def replay(svc: RecService, held_out: list[tuple[str, list[str]]], strong: str, weak: str, k: int = 10) -> dict:
    """The library's replay (``leanrec.service.replay``) over the four strong/weak experiments."""
    from leanrec.service.replay import replay as run
    from leanrec.service.replay import strong_weak_experiments

    return run(svc, held_out, strong_weak_experiments(svc, strong, weak), k)


def replay_service(tmp_path, train) -> tuple[RecService, str, str]:
    """EASE (strong) and popularity (weak) trained by the library on ``train`` and saved as
    model folders; a service holding the catalogue and the training events."""
    from leanrec.models import EASE, MostPopular
    from leanrec.models.persist import save_model
    from leanrec.service.importer import import_dataset

    strong = save_model(EASE(lam=100).fit(train), tmp_path / "ease", name="ease")
    weak = save_model(MostPopular().fit(train), tmp_path / "popular", name="popular")
    svc = RecService(ServiceConfig(db=f"sqlite:///{tmp_path / 'replay.db'}", data_dir=str(tmp_path / "data")),
                     encoder=HashEncoder()).start()
    import_dataset(svc, train)
    return svc, str(strong), str(weak)


def check_replay(reports: dict) -> None:
    strong, same = reports["ab-strong"], reports["ab-same"]
    control, treatment = strong["arms"]
    assert treatment["ctr"] > control["ctr"]
    assert strong["comparisons"][0]["p_value"] < 0.05 and strong["comparisons"][0]["significant"]
    assert not strong["srm"]["mismatch"]
    assert same["comparisons"][0]["p_value"] >= 0.05 and not same["srm"]["mismatch"]
    il, il_same = reports["il-strong"], reports["il-same"]
    assert il["wins"]["treatment"] > il["wins"]["control"] and il["p_value"] < 0.05 and il["preference"] < 0
    assert il_same["p_value"] >= 0.05
    assert il["p_value"] < strong["comparisons"][0]["p_value"]  # interleaving is the more sensitive test


def test_replay_on_generated_data_finds_the_stronger_arm(tmp_path):
    from leanrec.data.split import temporal_leave_one_out
    from leanrec.data.synth import make_dataset

    ds = make_dataset(n_users=600, n_items=150, seed=3)
    split = temporal_leave_one_out(ds)
    svc, strong, weak = replay_service(tmp_path, split.train_valid)
    frame = split.test.frame
    try:
        reports = replay(svc, [(str(u), [str(i)]) for u, i in zip(frame["user_id"], frame["item_id"])], strong, weak)
    finally:
        svc.stop()
    check_replay(reports)


def test_no_clicks_yet_is_not_certainty():
    from leanrec.service.experiments import Arm, ab_report, ratio_stats

    r, var = ratio_stats(np.zeros(3), np.ones(3))
    assert r == 0 and var > 0.01  # 0 clicks in 3 lists: Agresti–Coull width, not "exactly 0"
    arms = [Arm("a", 0.5, None), Arm("b", 0.5, None)]
    report = ab_report(arms, [(f"u{k}", "a", 0) for k in range(3)] + [(f"v{k}", "b", 1) for k in range(3)])
    lo, hi = report["arms"][0]["ctr_ci95"]
    assert lo == 0.0 and 0 < hi <= 1.0 and report["arms"][1]["ctr_ci95"][1] == 1.0  # clipped to [0, 1]
    assert report["comparisons"][0]["p_value"] > 0.01  # 3 users a side cannot be overwhelming evidence


def test_logging_an_exposure_needs_a_write_key_and_holds_no_write_lock_while_ranking(client, tmp_path):
    ease, popular = _folders(tmp_path)
    assert client.post("/experiments", headers=W, json={
        "id": "lock", "arms": [{"name": "pop", "model": str(popular)}, {"name": "ease", "model": str(ease)}]}
    ).status_code == 201
    for headers, status in (({}, 401), (R, 403)):  # a read that would write: refused, nothing logged
        r = client.get("/users/u1/recommendations", params={"experiment": "lock"}, headers=headers)
        assert r.status_code == status, r.text
    assert db_rows(tmp_path, "SELECT count(*) FROM exposures") == [(0,)]
    # while the list is ranked, another writer must get the database at once (SQLite: no waiting)
    svc = client.app.state.service
    rank, seen = svc._rank, []

    def rank_while_someone_writes(*args, **kwargs):
        with sqlite3.connect(tmp_path / "store.db", timeout=0) as other:
            other.execute("UPDATE counters SET value = value WHERE 1 = 0")
            other.execute("INSERT INTO counters (name, value) VALUES ('probe', 0) ON CONFLICT (name) DO NOTHING")
            seen.append("wrote")
        return rank(*args, **kwargs)

    svc._rank = rank_while_someone_writes
    try:
        r = client.get("/users/u1/recommendations", params={"experiment": "lock"}, headers=W)
    finally:
        svc._rank = rank
    assert r.status_code == 200 and seen, r.text
    assert db_rows(tmp_path, "SELECT count(*) FROM exposures WHERE items != '[]'") == [(1,)]
