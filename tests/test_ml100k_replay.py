"""The online-experiment replay on MovieLens-100K: users simulated from held-out events.

Each user's last ``HELD_OUT`` events (in the protocol's (timestamp, item) order) are held
out; EASE (strong) and popularity (weak) are trained by the library on the rest and saved as
model folders; the service holds the catalogue (encoded with the tests' word-hash encoder:
neither arm reads text, so MiniLM would only cost time) and the training events. At each
held-out event every user asks four experiments for ten items (A/B and team-draft
interleaving; weak vs strong, and strong vs itself) and clicks the held-out item when a list
shows it (see ``test_service_experiments.replay``). The reports must find EASE with
p < 0.05 in both modes, interleaving with the smaller p-value, and no difference between
identical arms. Several exposures per user: the A/B intervals are the delta method's.
About a minute on one core.
"""

import pytest
from test_service_experiments import check_replay, replay, replay_service

pytestmark = [pytest.mark.slow, pytest.mark.ml100k]

HELD_OUT = 5


def test_replay_on_ml100k_finds_the_stronger_arm(tmp_path):
    from leanrec.data.sources.movielens import load_ml100k
    from leanrec.data.split import _ordered

    ds = load_ml100k()
    ev = _ordered(ds)
    last = ev.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy() < HELD_OUT
    train = ds.with_events(ev.loc[~last, list(ds.events.frame.columns)])
    held = ev.loc[last]
    held_out = [(str(u), [str(i) for i in g["item_id"]]) for u, g in held.groupby("user_id", sort=False)]
    svc, strong, weak = replay_service(tmp_path, train)
    try:
        reports = replay(svc, held_out, strong, weak)
    finally:
        svc.stop()
    check_replay(reports)
    assert sum(a["users"] for a in reports["ab-strong"]["arms"]) == 943
    assert sum(a["exposures"] for a in reports["ab-strong"]["arms"]) == 943 * HELD_OUT
