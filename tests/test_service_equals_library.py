"""The service serves what the library evaluated, for every registered model kind; and a new
kind, defined in this file, is persisted, served, explained and put in an online experiment
with nothing but its own code and one registry line."""

from __future__ import annotations

import numpy as np
import pytest
from _service import HashEncoder
from test_model_persist import fit_learned_hybrid

from leanrec.data.synth import make_dataset
from leanrec.models import EASE, ContentRecommender, Hybrid, MostPopular
from leanrec.models.base import Recommender
from leanrec.models.live import Decomposition, LiveScorer, read_array
from leanrec.models.persist import load_model_folder, save_model
from leanrec.models.registry import SCORERS, register
from leanrec.models.sequential import SequentialRecommender
from leanrec.service import ServiceConfig
from leanrec.service.core import RecService
from leanrec.service.importer import import_dataset
from leanrec.service.scoring import live_user


def _content():
    return ContentRecommender(encoder=HashEncoder(), cache=False, half_life=4)


FACTORIES = {
    "popular": lambda ds: MostPopular().fit(ds),
    "ease": lambda ds: EASE(lam=30).fit(ds),
    "content": lambda ds: _content().fit(ds),
    "hybrid": lambda ds: Hybrid(content=_content(), cf=EASE(lam=30), weight=0.6).fit(ds),
    "sequential": lambda ds: SequentialRecommender(encoder=HashEncoder(), cache=False, pooling="attention", dim=16,
                                                   max_len=10, max_epochs=2, item_ids=True).fit(ds),
    "learned_hybrid": fit_learned_hybrid,
}


def _name_encoders(model) -> None:
    """Text parts name the encoder the in-process service is handed (the HashEncoder)."""
    parts = [model, getattr(model, "content_", None)] + [m for _, m in getattr(model, "components_", [])]
    for part in parts:
        if part is not None and hasattr(part, "encoder") and not isinstance(part.encoder, str):
            part.encoder = HashEncoder.model_id


def _serve(tmp_path, folder) -> RecService:
    return RecService(ServiceConfig(db=f"sqlite:///{tmp_path / 's.db'}", data_dir=str(tmp_path / "d"),
                                    model=str(folder)), encoder=HashEncoder()).start()


def _check_service_equals_library(svc, lib, ds, users) -> None:
    """Scores, lists and score splits of the served model equal the library's."""
    ids = [str(i) for i in ds.items.ids]
    to_id = type(ds.items.ids[0])
    for user in users:
        st = svc._user_state(str(user))
        served = svc.scoring.scorer.score([live_user(st)], svc.cat)[0][[svc.cat.pos[i] for i in ids]]
        np.testing.assert_allclose(served, lib.score([user])[0], rtol=1e-5, atol=1e-5)
        answer = svc.recommend(str(user), 8, explain=True)
        assert not answer["cold_start"]
        assert [i["item_id"] for i in answer["items"]] == [str(r.item_id) for r in lib.recommend(user, k=8)], user
        for item in answer["items"]:
            e = item["explanation"]
            want = lib.explain(user, to_id(item["item_id"]), limit=100)
            assert e["exact"] == want.exact and e["method"] == want.method
            assert e["base"] == pytest.approx(want.base, abs=1e-4)
            assert e["unexplained"] == pytest.approx(want.unexplained, abs=1e-4)
            ref = {str(c.item_id): c.contribution for c in want.contributions}
            for c in e["contributions"]:
                assert c["contribution"] == pytest.approx(ref[c["item_id"]], abs=1e-4), (user, item["item_id"])


def test_every_registered_kind_has_a_case_here():
    assert set(SCORERS) <= set(FACTORIES) | {CoCountScorer.kind}, "add a factory for the new kind"


#: configurations of a kind that change what its scorer reads (same kind, other code path)
VARIANTS = {
    "sequential-id-only": ("sequential", lambda ds: SequentialRecommender(
        use_text=False, item_ids=True, pooling="sasrec", dim=16, max_len=10, max_epochs=2).fit(ds)),
}


@pytest.mark.parametrize("case", sorted(FACTORIES) + sorted(VARIANTS))
def test_the_service_serves_what_the_library_evaluated(tmp_path, case):
    ds = make_dataset(n_users=40, n_items=40, seed=5)
    kind, factory = VARIANTS.get(case, (case, FACTORIES.get(case)))
    lib = factory(ds)
    _name_encoders(lib)
    folder = save_model(lib, tmp_path / "model", name=kind)
    assert load_model_folder(folder).kind == kind
    svc = _serve(tmp_path, folder)
    try:
        import_dataset(svc, ds)
        assert svc.model_info()["kind"] == kind
        _check_service_equals_library(svc, lib, ds, ds.events.frame["user_id"].unique()[:6])
    finally:
        svc.stop()


# -- a new kind: its module (this section) and one registry line ----------------------------
class CoCountScorer(LiveScorer):
    """score_i = Σ_j C_ji over the user's known items, C the items' co-occurrence counts in
    the training histories (diagonal 0): an exact split by history item, like EASE's."""

    kind = "cocount"
    explain_method = "co-occurrence counts"

    def __init__(self, item_ids, popularity, C, **kw):
        super().__init__(item_ids, popularity, **kw)
        self.C = np.asarray(C, np.float32)

    def _rows(self, user, cat):
        known, rows = self.known_rows(user.seen)
        return np.asarray(known, dtype=object), self.to_catalogue(cat, self.C[rows].astype(np.float64))

    def score(self, users, cat):
        return np.stack([self._rows(u, cat)[1].sum(axis=0) for u in users]).astype(np.float32)

    def decompose(self, user, cat, positions):
        ids, rows = self._rows(user, cat)
        n = len(positions)
        return Decomposition(ids, rows[:, positions], np.zeros(n), np.zeros(n), self.explain_method)

    def _save_arrays(self, folder):
        np.save(folder / "cocount.npy", self.C)

    @classmethod
    def _from_folder(cls, path, config, item_ids, popularity, load=None):
        return cls(item_ids, popularity, read_array(path, "cocount.npy"), meta=config)


class CoCount(Recommender):
    explain_method = CoCountScorer.explain_method

    def _fit(self, dataset):
        X = self.history_.matrix
        C = (X.T @ X).toarray()
        np.fill_diagonal(C, 0.0)
        self.C_ = C.astype(np.float32)

    def live_scorer(self):
        return CoCountScorer(self.items_.ids, self.history_.item_counts, self.C_)


@pytest.fixture
def cocount_registered():
    register(CoCountScorer)  # the registry line
    yield
    SCORERS.pop(CoCountScorer.kind)


def test_a_new_kind_is_persisted_served_explained_and_in_an_experiment(tmp_path, cocount_registered):
    ds = make_dataset(n_users=40, n_items=40, seed=5)
    lib = CoCount().fit(ds)
    user = ds.events.frame["user_id"].iloc[0]
    d = lib.decompose(user)
    assert d.exact and np.allclose(d.total, lib.score([user])[0])
    folder = save_model(lib, tmp_path / "cocount", name="cc")
    loaded = load_model_folder(folder)
    assert loaded.kind == "cocount" and np.array_equal(loaded.C, lib.C_)
    svc = _serve(tmp_path, folder)
    try:
        import_dataset(svc, ds)
        users = ds.events.frame["user_id"].unique()[:6]
        _check_service_equals_library(svc, lib, ds, users)
        exp = svc.create_experiment({"id": "cc-vs-content", "mode": "ab",
                                     "arms": [{"name": "content"}, {"name": "cc", "model": str(folder)}]})
        assert [a["model"] for a in exp["arms"]][1] == str(folder.resolve())
        served = {svc.recommend(str(u), 5, experiment="cc-vs-content")["experiment"]["arm"]: str(u)
                  for u in ds.events.frame["user_id"].unique()}
        assert set(served) == {"content", "cc"}  # both arms serve
        answer = svc.recommend(served["cc"], 5, experiment="cc-vs-content", explain=True)
        assert answer["model"] == "cc"
        user_id = next(u for u in ds.events.frame["user_id"].unique() if str(u) == served["cc"])
        want = [str(r.item_id) for r in lib.recommend(user_id, k=5)]
        assert [i["item_id"] for i in answer["items"]] == want
        assert all(i["explanation"]["method"] == "co-occurrence counts" and i["explanation"]["exact"]
                   for i in answer["items"])
    finally:
        svc.stop()
