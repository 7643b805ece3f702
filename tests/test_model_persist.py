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
    assert folder.kind == "ease" and folder.item_ids == [str(i) for i in synthetic.items.ids]
    np.testing.assert_array_equal(folder.B, ease.B_)
    np.testing.assert_array_equal(folder.popularity, ease.history_.item_counts)
    pop = load_model_folder(save_model(MostPopular().fit(synthetic), tmp_path / "pop", name="p"))
    assert pop.kind == "popular" and pop.name == "p" and not hasattr(pop, "B")


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


# -- sequential models ------------------------------------------------------------------
def _fit_sequential(ds):
    """A small SASRec on the tests' word-hash encoder, renamed to that encoder's id so the
    folder names an encoder (the in-process service is handed the same HashEncoder)."""
    from _service import HashEncoder

    from leanrec.models.sequential import SequentialRecommender

    model = SequentialRecommender(encoder=HashEncoder(), pooling="sasrec", dim=16, max_len=10, max_epochs=2,
                                  item_ids=True, cache=False).fit(ds)
    model.encoder = HashEncoder.model_id
    return model


@pytest.fixture(scope="module")
def small():
    from leanrec.data.synth import make_dataset

    return make_dataset(n_users=60, n_items=40, seed=5)


@pytest.fixture(scope="module")
def sasrec(small):
    return _fit_sequential(small)


def test_sequential_round_trip(sasrec, small, tmp_path):
    import torch

    from leanrec.models.persist import SEQNET_FILE

    path = save_model(sasrec, tmp_path / "seq", name="s")
    assert (path / SEQNET_FILE).is_file() and not (path / "ease_B.npy").exists()
    folder = load_model_folder(path)
    assert folder.kind == "sequential" and folder.name == "s" and folder.item_ids == [str(i) for i in small.items.ids]
    assert folder.encoder == {"name": "hash-bag-32", "backend": "torch", "precision": "fp32"}
    assert folder.half_life is None  # the service's profiles keep their own decay
    np.testing.assert_array_equal(folder.popularity, sasrec.history_.item_counts)
    cfg = folder.config
    assert {k: cfg[k] for k in ("pooling", "dim", "max_len", "item_ids", "text_dim", "n_items")} == \
        {"pooling": "sasrec", "dim": 16, "max_len": 10, "item_ids": True, "text_dim": 32, "n_items": 40}
    # every weight, and which items had training events (their ID embeddings are used);
    # not the training catalogue's text vectors: the service projects its own
    want = {k: v for k, v in sasrec.net_.state_dict().items() if k != "text"}
    assert set(folder.state) == set(want)
    for k, v in want.items():
        assert torch.equal(folder.state[k], v), k
    # plain tensors: readable without unpickling arbitrary objects
    assert set(torch.load(path / SEQNET_FILE, weights_only=True)) == set(want)


def test_sequential_with_unservable_encoder_is_refused(small, tmp_path):
    from _service import HashEncoder

    from leanrec.models.sequential import SequentialRecommender

    tfidf = SequentialRecommender(encoder="tfidf", pooling="mean", dim=8, max_len=5, max_epochs=1).fit(small)
    with pytest.raises(ValueError, match="TF-IDF sequential model cannot be served"):
        save_model(tfidf, tmp_path / "t")
    obj = SequentialRecommender(encoder=HashEncoder(), cache=False, pooling="mean", dim=8, max_len=5,
                                max_epochs=1).fit(small)
    with pytest.raises(ValueError, match="given by name"):
        save_model(obj, tmp_path / "o")
    assert not (tmp_path / "t").exists() and not (tmp_path / "o").exists()


def test_broken_sequential_folders_name_the_weights_file(sasrec, tmp_path):
    from leanrec.models.persist import SEQNET_FILE

    path = save_model(sasrec, tmp_path / "seq")
    weights = (path / SEQNET_FILE).read_bytes()
    (path / SEQNET_FILE).write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match=f"{SEQNET_FILE}: not a readable torch weights file"):
        load_model_folder(path)
    (path / SEQNET_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=f"{SEQNET_FILE} .* is missing"):
        load_model_folder(path)
    (path / SEQNET_FILE).write_bytes(weights)
    meta = json.loads((path / MODEL_FILE).read_text())
    (path / MODEL_FILE).write_text(json.dumps({**meta, "seqnet": {**meta["seqnet"], "dim": 32}}))
    with pytest.raises(ValueError, match=f"{SEQNET_FILE}: does not fit the network"):
        load_model_folder(path)
    (path / MODEL_FILE).write_text(json.dumps(meta))
    assert load_model_folder(path).kind == "sequential"


# -- learned hybrid ---------------------------------------------------------------------
def fit_learned_hybrid(ds):
    """EASE + content + SASRec + popularity, the text parts on the word-hash encoder."""
    from _service import HashEncoder

    from leanrec.models.learned_hybrid import LearnedHybrid
    from leanrec.models.sequential import SequentialRecommender

    model = LearnedHybrid(components=[
        ("ease", EASE(lam=30)), ("content", ContentRecommender(encoder=HashEncoder(), cache=False, half_life=4)),
        ("sasrec", SequentialRecommender(encoder=HashEncoder(), cache=False, dim=16, max_len=10, max_epochs=2,
                                         item_ids=True)),
        ("pop", MostPopular())]).fit(ds)
    for _, comp in model.components_:
        if hasattr(comp, "encoder"):
            comp.encoder = HashEncoder.model_id
    return model


def test_learned_hybrid_round_trip_and_refusals(small, tmp_path):
    import copy

    model = fit_learned_hybrid(small)
    path = save_model(model, tmp_path / "lh")
    folder = load_model_folder(path)
    assert folder.kind == "learned_hybrid" and folder.encoder["name"] == "hash-bag-32" and folder.half_life == 4
    assert [(n, f.kind) for n, f in folder.parts] == \
        [("ease", "ease"), ("content", "content"), ("sasrec", "sequential"), ("pop", "popular")]
    assert folder.weights == model.weights_ and folder.new_item_weights == model.new_item_weights_
    np.testing.assert_array_equal(folder.parts[0][1].B, model.components_[0][1].B_)
    # one encoder for every text part; only popular/ease/content/sequential components
    mixed = copy.copy(model)
    mixed.components_ = [(n, copy.copy(c)) for n, c in model.components_]
    mixed.components_[1][1].encoder = "minilm"
    with pytest.raises(ValueError, match="one encoder"):
        save_model(mixed, tmp_path / "mixed")
    nested = copy.copy(model)
    nested.components_ = [model.components_[0], ("inner", model)]
    with pytest.raises(ValueError, match="component .inner.: cannot save a LearnedHybrid"):
        save_model(nested, tmp_path / "nested")
    assert not (tmp_path / "mixed").exists() and not (tmp_path / "nested").exists()
    # a broken component folder is named
    (path / "components" / "c2" / "seqnet.pt").unlink()
    with pytest.raises(FileNotFoundError, match="c2: seqnet.pt"):
        load_model_folder(path)
