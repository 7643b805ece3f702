"""README's service path on MovieLens-100K: train a model folder, import the data set into
a store, and the service lists equal the library's for the same model."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.ml100k]


def _leanrec(*args, cwd):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "leanrec.cli", *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_train_import_and_serve_ml100k(tmp_path):
    from leanrec.data.sources.movielens import load_ml100k
    from leanrec.models.persist import load_model_folder
    from leanrec.service.config import ServiceConfig
    from leanrec.service.core import RecService

    _leanrec("model", "train", "--model", "hybrid", "--out", "model", "--results", "none.json", cwd=tmp_path)
    folder = load_model_folder(tmp_path / "model")
    assert folder.kind == "hybrid" and len(folder.item_ids) == 1682
    out = _leanrec("service", "import", "--dataset", "ml-100k", "--db", f"sqlite:///{tmp_path / 'ml.db'}", "--model", "model",
                   "--data-dir", "data", cwd=tmp_path)
    assert "1682 items and 100000 events" in out
    out = _leanrec("service", "import", "--dataset", "ml-100k", "--db", f"sqlite:///{tmp_path / 'ml.db'}", "--model", "model",
                   "--data-dir", "data", cwd=tmp_path)
    assert "events skipped" in out

    from leanrec.models.presets import ExperimentConfig, model_grid

    ds = load_ml100k(fetch=False)
    est, grid = model_grid("hybrid", ExperimentConfig(), {})
    lib = est.set_params(**grid[0]).fit(ds)
    svc = RecService(ServiceConfig(db=f"sqlite:///{tmp_path / 'ml.db'}", data_dir=str(tmp_path / "data"),
                                   model=str(tmp_path / "model"))).start()
    try:
        for user in (1, 7, 42, 196, 500, 943):
            want = [str(r.item_id) for r in lib.recommend(user, k=10)]
            assert [i["item_id"] for i in svc.recommend(str(user), 10)["items"]] == want
        # cold start with the trained hybrid: a new "sequel" of the user's latest film, no retraining
        texts = dict(zip(ds.items.ids.tolist(), ds.items.texts))
        events = ds.events.frame
        for user in (1, 42, 500, 943):
            last = events[events.user_id == user].sort_values("timestamp").item_id.iloc[-1]
            title, rest = texts[last].split(" (", 1)[0], texts[last].split(". ", 1)[1]
            svc.upsert_items([{"item_id": f"sequel-{user}", "text": f"{title} II (1998). {rest}", "fields": {}}])
            top = [i["item_id"] for i in svc.recommend(str(user), 10)["items"]]
            assert f"sequel-{user}" in top, (user, top)
    finally:
        svc.stop()
