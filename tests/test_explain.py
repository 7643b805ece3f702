"""Explanations by hand: the split's arithmetic, the shared attributes and the sentence."""

import json

import numpy as np
import pandas as pd
import pytest

from leanrec.data.schema import Dataset, Events, Items
from leanrec.explain import explain, explain_items, verb_for
from leanrec.models import EASE, ContentRecommender, Hybrid, MostPopular


class FixedEncoder:
    model_id = "fixed"

    def __init__(self, vectors):
        self.vectors = np.asarray(vectors, np.float32)
        self.dim = self.vectors.shape[1]

    def encode(self, texts, **_):
        return self.vectors[: len(texts)]


MOVIES = [  # id, title, year, genres, text words
    (1, "Heat", 1995, ["Action", "Crime", "Thriller"], "heist robbery detective"),
    (2, "Casino", 1995, ["Crime", "Drama"], "mob vegas robbery"),
    (3, "Toy Story", 1995, ["Animation", "Comedy"], "toys friendship"),
    (4, "Goodfellas", 1990, ["Crime", "Drama", "Thriller"], "mob robbery detective"),
    (5, "Babe", 1995, ["Comedy"], "pig farm"),
]
VECTORS = [[1, 0, 0], [0.8, 0.6, 0], [0, 0, 1], [0.6, 0.8, 0], [0, 0.6, 0.8]]


def _movies(verb="watched"):
    frame = pd.DataFrame({"item_id": [m[0] for m in MOVIES], "title": [m[1] for m in MOVIES],
                          "year": [m[2] for m in MOVIES], "genres": [m[3] for m in MOVIES]})
    frame["text"] = [f"{m[1]} ({m[2]}). {m[4]}. Genres: {', '.join(m[3])}" for m in MOVIES]
    items = Items.from_frame(frame, text_fields=("title",), categorical_fields=("genres",), numeric_fields=("year",))
    ev = pd.DataFrame({"user_id": ["u", "u", "u", "v", "v", "w"], "item_id": [1, 2, 1, 3, 5, 4],
                       "timestamp": [1, 2, 3, 1, 2, 1], "kind": ["rating"] * 6})
    return Dataset(items, Events.from_frame(ev), meta={"verb": verb} if verb else {})


def test_content_contributions_are_the_weighted_similarities():
    ds = _movies()
    m = ContentRecommender(encoder=FixedEncoder(VECTORS), half_life=1.0, cache=False).fit(ds)
    V = np.array(VECTORS)
    # u: Heat (age 2, w .25), Casino (age 1, w .5), Heat again (age 0, w 1): Heat's weight adds up
    w = {1: (0.25 + 1.0) / 1.75, 2: 0.5 / 1.75}
    e = m.explain("u", 4)
    got = {c.item_id: c.contribution for c in e.contributions}
    assert got == pytest.approx({j: w[j] * V[j - 1] @ V[3] for j in w})
    assert e.exact and e.base == 0 and e.unexplained == 0
    assert e.total == pytest.approx(e.score, abs=1e-6)
    assert [c.item_id for c in e.contributions] == [1, 2]  # largest first
    assert sum(c.share for c in e.contributions) == pytest.approx(1.0)


def test_sentence_names_the_contributors_and_what_they_share():
    ds = _movies()
    m = ContentRecommender(encoder=FixedEncoder(VECTORS), half_life=None, cache=False).fit(ds)
    e = m.explain("u", 4)
    assert e.title == "Goodfellas (1990)"
    assert e.shared == {"genres": ["Crime", "Thriller", "Drama"]}  # by contributors sharing it, then name
    assert e.sentence == "Because you watched Heat (1995) and Casino (1995) — shares Crime, Thriller, Drama."
    assert "robbery" in e.words  # salient words shared with the contributors
    one = m.explain("u", 4, top=1)
    assert one.sentence.startswith("Because you watched Heat (1995) —")


def test_verb_comes_from_the_data():
    assert verb_for(_movies()) == "watched"
    assert verb_for(_movies(verb=None)) == "rated"  # the most common event kind
    e = ContentRecommender(encoder=FixedEncoder(VECTORS), cache=False).fit(_movies(verb=None)).explain("u", 4)
    assert e.sentence.startswith("Because you rated")
    assert explain(ContentRecommender(encoder=FixedEncoder(VECTORS), cache=False).fit(_movies()), "u", 4,
                   verb="bought").sentence.startswith("Because you bought")


def test_ease_contributions_are_rows_of_B():
    ds = _movies()
    m = EASE(lam=1.0).fit(ds)
    e = m.explain("u", 4)
    assert {c.item_id: c.contribution for c in e.contributions} == pytest.approx(
        {1: float(m.B_[0, 3]), 2: float(m.B_[1, 3])})
    assert e.total == pytest.approx(e.score, abs=1e-6) and e.method.startswith("item-item")


def test_hybrid_split_is_exact_and_centred():
    ds = _movies()
    h = Hybrid(ContentRecommender(encoder=FixedEncoder(VECTORS), cache=False), EASE(lam=1.0), weight=0.4).fit(ds)
    d = h.decompose("u")
    assert np.allclose(d.total, h.score(["u"])[0], atol=1e-5) and d.exact
    # z-scores are centred: over the items a part is normalised on, each history item's
    # share of that part averages to 0 (it says how much the item lifts this one above average)
    from leanrec.models.decompose import zscore_split

    user = h._users(h.history_.rows(["u"]))[0]
    content = zscore_split(h.content_.scorer_, user, h.catalogue_, np.arange(5), None, np.ones(5))
    assert np.allclose(content.contributions.mean(axis=1), 0, atol=1e-9)
    cols = np.flatnonzero(h.has_events_)
    cf = zscore_split(h.cf_.scorer_, user, h.catalogue_, cols, cols, np.ones(len(cols)))
    assert np.allclose(cf.contributions.mean(axis=1), 0, atol=1e-9)
    for e in explain_items(h, "u", [3, 4, 5]):
        assert e.total == pytest.approx(e.score, abs=1e-5)


def test_popularity_says_it_is_not_personal():
    e = MostPopular().fit(_movies()).explain("v", 1)
    assert e.exact and e.contributions == [] and e.base == e.score == 2
    assert "not based on your history" in e.sentence


def test_long_histories_are_cut_but_still_add_up():
    ds = _movies()
    m = ContentRecommender(encoder=FixedEncoder(VECTORS), cache=False).fit(ds)
    e = m.explain("u", 4, limit=1)
    assert len(e.contributions) == 1 and e.other != 0
    assert e.total == pytest.approx(e.score, abs=1e-6)


def test_unknown_user_or_item_is_a_clear_error():
    m = ContentRecommender(encoder=FixedEncoder(VECTORS), cache=False).fit(_movies())
    with pytest.raises(KeyError, match="nobody"):
        m.explain("nobody", 1)
    with pytest.raises(KeyError, match="99"):
        m.explain("u", 99)


def test_structured_form_is_plain_json():
    m = ContentRecommender(encoder=FixedEncoder(VECTORS), cache=False).fit(_movies())
    data = json.loads(json.dumps(m.explain("u", 4).to_dict()))
    assert data["item_id"] == 4 and data["exact"] is True
    assert {"item_id", "title", "contribution", "share"} == set(data["contributions"][0])
    total = sum(c["contribution"] for c in data["contributions"]) + data["other"] + data["base"] + data["unexplained"]
    assert total == pytest.approx(data["score"], abs=1e-6)


def test_the_sentence_names_only_contributors_a_reader_would_recognise():
    from leanrec.explain import leaders, sentence

    col = np.array([0.1, 1.0, -0.2, 0.5])
    assert leaders(col, np.argsort(-col, kind="stable"), 3) == [1, 3]  # 0.1 < 20% of the top one
    assert leaders(-col.clip(0), np.argsort(col), 3) == []             # nothing positive: nobody named
    text = sentence("watched", ["A", "B"], {"genres": ["w", "x", "y", "z"]}, [], exact=True, method="m",
                    base_only=False, base=0.0, partial=False)
    assert text == "Because you watched A and B — shares w, x, y."
