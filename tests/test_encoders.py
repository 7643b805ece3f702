"""The encoder contract, checked once for every encoder leanrec ships.

One parametrised fixture yields each encoder (TF-IDF fitted on a small corpus, MiniLM,
and a CachedEncoder around each); one test checks the whole contract on all of them, so
a new encoder is covered by adding one fixture parameter.
"""

from __future__ import annotations

import os

# Must be set before anything imports huggingface_hub, which reads it at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pickle
import time

import numpy as np
import pytest
from sklearn.base import clone

from leanrec.core.errors import NotFittedError
from leanrec.encoders import (
    CachedEncoder,
    EmbeddingCache,
    Encoder,
    ModelNotAvailableError,
    SentenceTransformerEncoder,
    TfidfEncoder,
    l2_normalize,
    load_encoder,
)

CORPUS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy",
    "Jumanji (1995). Genres: Adventure, Children's, Fantasy",
    "Heat (1995). Genres: Action, Crime, Thriller",
    "GoldenEye (1995). Genres: Action, Adventure, Thriller",
    "Sense and Sensibility (1995). Genres: Drama, Romance",
    "Babe (1995). Genres: Children's, Comedy, Drama",
    "Casino (1995). Genres: Drama, Thriller",
    "Balto (1995). Genres: Animation, Children's",
    "Braveheart (1995). Genres: Action, Drama, War",
    "Star Wars (1977). Genres: Action, Adventure, Romance, Sci-Fi, War",
]
# Texts to encode: mostly unseen by TF-IDF's fit, each sharing at least one known token
# (a text with no known token legitimately maps to the zero vector).
TEXTS = [
    "Toy Story (1995). Genres: Animation, Children's, Comedy",
    "A funny animated movie for children",
    "Crime thriller with a heist",
    "Heat (1995). Genres: Action, Crime, Thriller",
    "Romance drama in the nineteenth century",
    "Star Wars (1977). Genres: Action, Adventure, Romance, Sci-Fi, War",
    "Toy Story (1995). Genres: Animation, Children's, Comedy",  # duplicate on purpose
]

ENCODER_KINDS = ["tfidf", "minilm", "cached-tfidf", "cached-minilm"]


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEncoder:
    """One loaded MiniLM for the whole module: loading takes seconds on 2 cores."""
    encoder = load_encoder("minilm", batch_size=4)
    encoder.load()
    return encoder


@pytest.fixture(scope="module")
def tfidf() -> TfidfEncoder:
    return TfidfEncoder().fit(CORPUS)


@pytest.fixture(params=ENCODER_KINDS)
def encoder(request, tmp_path, tfidf, minilm) -> Encoder:
    """Every encoder that must honour the contract (caches start empty in tmp_path)."""
    kind = request.param
    base = tfidf if kind.endswith("tfidf") else minilm
    if kind.startswith("cached-"):
        return CachedEncoder(base, EmbeddingCache(tmp_path / "embeddings.sqlite"))
    return base


def test_encoder_contract(encoder: Encoder) -> None:
    assert isinstance(encoder, Encoder)
    assert isinstance(encoder.model_id, str) and encoder.model_id
    dim = encoder.dim
    assert isinstance(dim, int) and dim > 0

    # Shape, dtype, unit norms; progress calls sum to the number of texts.
    done: list[int] = []
    first = encoder.encode(TEXTS, batch_size=3, progress=done.append)
    assert first.shape == (len(TEXTS), dim)
    assert first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert sum(done) == len(TEXTS) and all(k > 0 for k in done)
    np.testing.assert_allclose(first[0], first[-1], atol=1e-6)  # same text, same row

    # Deterministic: the same texts again give the same vectors.
    again = encoder.encode(TEXTS)
    np.testing.assert_allclose(again, first, atol=1e-6)

    # Independent of batching and order: one by one, and reversed, give the same rows.
    singles = np.vstack([encoder.encode([t], batch_size=1) for t in TEXTS])
    np.testing.assert_allclose(singles, first, atol=1e-5)
    reversed_rows = encoder.encode(TEXTS[::-1])[::-1]
    np.testing.assert_allclose(reversed_rows, first, atol=1e-5)

    # Empty input keeps the width.
    empty = encoder.encode([])
    assert empty.shape == (0, dim) and empty.dtype == np.float32

    # Bad texts are refused, naming the index of the culprit.
    for bad in ("", "   ", None, 42, 3.5, b"bytes"):
        with pytest.raises(ValueError, match="index 1"):
            encoder.encode(["fine text", bad])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        encoder.encode("a single string is not a list of texts")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(TEXTS, batch_size=0)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)  # rows are unit vectors


def test_minilm_semantic_sanity(minilm: SentenceTransformerEncoder) -> None:
    query, toy_story, heat = minilm.encode(
        [
            "a funny animated movie for children",
            "Toy Story (1995). Genres: Animation, Children's, Comedy",
            "Heat (1995). Genres: Action, Crime, Thriller",
        ]
    )
    assert _cos(query, toy_story) > _cos(query, heat)


def test_minilm_model_id_tracks_options(minilm: SentenceTransformerEncoder) -> None:
    mid = minilm.model_id
    assert mid.startswith("sbert:sentence-transformers/all-MiniLM-L6-v2@")
    # Every alias is the same model; a different max_seq_length is not.
    for alias in ("all-MiniLM-L6-v2", "MiniLM", "sentence-transformers/all-MiniLM-L6-v2"):
        assert SentenceTransformerEncoder(alias).model_id == mid
    assert SentenceTransformerEncoder(max_seq_length=32).model_id != mid
    # model_id must not need the weights in memory (a fully cached run never loads them).
    fresh = SentenceTransformerEncoder()
    assert fresh.model_id == mid and not fresh.is_loaded


def test_sbert_is_a_sklearn_estimator(minilm: SentenceTransformerEncoder) -> None:
    params = minilm.get_params()
    assert params == {
        "model": "minilm",
        "device": "cpu",
        "batch_size": 4,
        "max_seq_length": None,
        "threads": None,
        "precision": "fp32",
        "layers": None,
    }
    copy = clone(minilm)
    assert copy.get_params() == params and not copy.is_loaded
    restored = pickle.loads(pickle.dumps(minilm))
    assert not restored.is_loaded and minilm.is_loaded  # the weights are not pickled


@pytest.mark.parametrize("name", ["bert-base-uncased", "sentence-transformers/all-mpnet-base-v2", "/no/such/folder"])
def test_unknown_model_fails_fast_and_clearly(name: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match="not available offline; pass a local folder path"):
        load_encoder(name)
    with pytest.raises(FileNotFoundError, match="not available offline"):
        SentenceTransformerEncoder(name).encode(["some text"])
    with pytest.raises(ModelNotAvailableError):
        _ = SentenceTransformerEncoder(name).model_id
    assert time.perf_counter() - start < 5.0


def test_load_encoder_choices() -> None:
    with pytest.raises(ValueError, match="tfidf, all-MiniLM-L6-v2, minilm"):
        load_encoder("word2vec")
    assert isinstance(load_encoder("TFIDF", max_features=100), TfidfEncoder)
    assert load_encoder("tfidf", min_df=2).min_df == 2


def test_load_encoder_accepts_a_local_folder(minilm: SentenceTransformerEncoder) -> None:
    folder = minilm.resolve().path
    encoder = load_encoder(str(folder))
    assert isinstance(encoder, SentenceTransformerEncoder)
    # Same files, same fingerprint; only the display name differs.
    assert encoder.model_id.split("@", 1)[1] == minilm.model_id.split("@", 1)[1]


def test_tfidf_must_be_fitted_first() -> None:
    encoder = TfidfEncoder()
    with pytest.raises(NotFittedError, match="fit"):
        encoder.encode(["Toy Story"])
    with pytest.raises(NotFittedError):
        _ = encoder.model_id
    assert not isinstance(encoder, Encoder)
    with pytest.raises(ValueError, match="index 2"):
        encoder.fit(["Toy Story", "Heat", None])  # type: ignore[list-item]


def test_tfidf_estimator_contract_and_model_id() -> None:
    encoder = TfidfEncoder(max_features=50, ngram_range=(1, 1))
    assert encoder.get_params() == {"max_features": 50, "ngram_range": (1, 1), "sublinear_tf": True, "min_df": 1}
    assert not [k for k in vars(encoder) if k.endswith("_")]  # constructor only stores params
    encoder.fit(CORPUS)
    assert encoder.dim <= 50 and encoder.model_id.startswith("tfidf:")
    # Refitting on the same data is the same model; other data or params are not.
    assert clone(encoder).fit(CORPUS).model_id == encoder.model_id
    assert clone(encoder).fit(CORPUS[:5]).model_id != encoder.model_id
    assert TfidfEncoder(max_features=50, ngram_range=(1, 2)).fit(CORPUS).model_id != encoder.model_id
    # A text with no known token is the zero vector (documented), never NaN.
    vec = encoder.encode(["zzz qqq"])
    assert np.all(vec == 0)


def test_l2_normalize_keeps_zero_rows() -> None:
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
