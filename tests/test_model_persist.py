"""Model folders: what the library saves is what the service loads, and broken folders say why."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leanrec.models import EASE, ContentRecommender, Hybrid, MostPopular
from leanrec.models.persist import MODEL_FILE, load_model_folder, save_model


def test_round_trip_of_each_kind(synthetic, tmp_path):
    ease = EASE(lam=50).fit(synthetic)
    folder = load_model_folder(save_model(ease, tmp_path / "ease"))
    assert folder.kind == "ease" and folder.item_ids == synthetic.items.ids.tolist()
    np.testing.assert_array_equal(folder.ease_B, ease.B_)
    np.testing.assert_array_equal(folder.popularity, ease.history_.item_counts)
    pop = load_model_folder(save_model(MostPopular().fit(synthetic), tmp_path / "pop", name="p"))
    assert pop.kind == "popular" and pop.name == "p" and pop.ease_B is None


def test_unfitted_and_unservable_models_are_refused(synthetic, tmp_path):
    with pytest.raises(RuntimeError, match="not fitted"):
        save_model(EASE(), tmp_path / "x")
    tfidf = ContentRecommender(encoder="tfidf").fit(synthetic)
    with pytest.raises(ValueError, match="TF-IDF"):
        save_model(tfidf, tmp_path / "t")
    hybrid = Hybrid(content=ContentRecommender(encoder="tfidf")).fit(synthetic)
    with pytest.raises(ValueError, match="TF-IDF"):
        save_model(hybrid, tmp_path / "h")
    assert not (tmp_path / "t").exists() and not (tmp_path / "h").exists()


def test_broken_folders_name_the_problem(synthetic, tmp_path):
    with pytest.raises(FileNotFoundError, match=MODEL_FILE):
        load_model_folder(tmp_path)
    path = save_model(EASE().fit(synthetic), tmp_path / "m")
    meta = json.loads((path / MODEL_FILE).read_text())
    (path / MODEL_FILE).write_text(json.dumps({**meta, "kind": "magic"}))
    with pytest.raises(ValueError, match="kind"):
        load_model_folder(path)
    (path / MODEL_FILE).write_text(json.dumps(meta))
    np.save(path / "ease_B.npy", np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="ease_B.npy has shape"):
        load_model_folder(path)
    (path / MODEL_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_model_folder(path)
