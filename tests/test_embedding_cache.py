"""The on-disk embedding cache: encode once, reuse across runs, never serve a wrong vector."""

from __future__ import annotations

import os

# Must be set before anything imports huggingface_hub, which reads it at import time.
os.environ["HF_HUB_OFFLINE"] = "1"

import sqlite3
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from leanrec.encoders import (
    CACHE_DIR_ENV,
    CachedEncoder,
    EmbeddingCache,
    TfidfEncoder,
    default_cache_path,
    text_hash,
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
]


class CountingEncoder:
    """Wraps an encoder and records every text it is actually asked to encode."""

    def __init__(self, inner, model_id: str | None = None) -> None:
        self.inner = inner
        self._model_id = model_id
        self.encoded: list[str] = []
        self.dim_reads = 0

    @property
    def model_id(self) -> str:
        return self._model_id or self.inner.model_id

    @property
    def dim(self) -> int:
        self.dim_reads += 1
        return self.inner.dim

    def encode(self, texts: Sequence[str], *, batch_size=None, progress=None) -> np.ndarray:
        self.encoded.extend(texts)
        return self.inner.encode(texts, batch_size=batch_size, progress=progress)


@pytest.fixture(scope="module")
def tfidf() -> TfidfEncoder:
    return TfidfEncoder().fit(CORPUS)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "cache" / "embeddings.sqlite"


def test_second_run_encodes_nothing(tfidf, db) -> None:
    first_inner = CountingEncoder(tfidf)
    first = CachedEncoder(first_inner, EmbeddingCache(db))
    out1 = first.encode(CORPUS)
    assert first_inner.encoded == CORPUS
    assert (first.hits, first.misses) == (0, len(CORPUS))
    np.testing.assert_array_equal(out1, tfidf.encode(CORPUS))  # identical to uncached

    # A new encoder object over a new cache object on the same file: a later run.
    second_inner = CountingEncoder(tfidf)
    second = CachedEncoder(second_inner, EmbeddingCache(db))
    done: list[int] = []
    out2 = second.encode(CORPUS, progress=done.append)
    assert second_inner.encoded == []
    assert second_inner.dim_reads == 0  # e.g. a sentence-transformer is not even loaded
    assert (second.hits, second.misses) == (len(CORPUS), 0)
    assert sum(done) == len(CORPUS)
    np.testing.assert_array_equal(out2, out1)
    assert second.dim == out2.shape[1]


def test_partial_overlap_encodes_only_new_texts(tfidf, db) -> None:
    CachedEncoder(tfidf, db).encode(CORPUS[:5])
    inner = CountingEncoder(tfidf)
    cached = CachedEncoder(inner, db)
    texts = [CORPUS[6], CORPUS[0], CORPUS[5], CORPUS[6], CORPUS[3]]  # two new, one repeated
    done: list[int] = []
    out = cached.encode(texts, batch_size=1, progress=done.append)
    assert inner.encoded == [CORPUS[6], CORPUS[5]]  # each new text once, in first-seen order
    assert (cached.hits, cached.misses) == (2, 2)
    assert (cached.total_hits, cached.total_misses) == (2, 2)
    assert sum(done) == len(texts)
    np.testing.assert_array_equal(out, tfidf.encode(texts))
    cached.encode(texts)
    assert (cached.hits, cached.misses) == (4, 0)
    assert (cached.total_hits, cached.total_misses) == (6, 2)


def test_model_ids_do_not_share_entries(tfidf, db) -> None:
    a = CachedEncoder(CountingEncoder(tfidf, model_id="model-a"), db)
    a.encode(CORPUS)
    b_inner = CountingEncoder(tfidf, model_id="model-b")
    b = CachedEncoder(b_inner, db)
    b.encode(CORPUS)
    assert b_inner.encoded == CORPUS
    # A TF-IDF refitted on other data is another model, so it misses too.
    refit = TfidfEncoder().fit(CORPUS[:4])
    assert refit.model_id != tfidf.model_id
    c = CachedEncoder(refit, db)
    out = c.encode(CORPUS[:3])
    assert c.misses == 3 and out.shape[1] == refit.dim
    cache = EmbeddingCache(db)
    assert cache.count("model-a") == cache.count("model-b") == len(CORPUS)
    assert set(cache.model_ids()) == {"model-a", "model-b", refit.model_id}


def _tamper(db, model_id: str, text: str, dim: int, blob: bytes) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE embeddings_v1 SET dim = ?, vector = ? WHERE model_id = ? AND text_hash = ?",
            (dim, blob, model_id, text_hash(text)),
        )


def test_bad_rows_are_recomputed_and_repaired(tfidf, db) -> None:
    expected = CachedEncoder(tfidf, db).encode(CORPUS[:4])
    mid = tfidf.model_id
    _tamper(db, mid, CORPUS[0], tfidf.dim, b"\x00\x01")  # truncated blob
    _tamper(db, mid, CORPUS[1], 3, np.array([1, 0, 0], "<f4").tobytes())  # another width
    _tamper(db, mid, CORPUS[2], tfidf.dim, np.full(tfidf.dim, np.nan, "<f4").tobytes())  # NaN
    inner = CountingEncoder(tfidf)
    cached = CachedEncoder(inner, db)
    out = cached.encode(CORPUS[:4])
    assert sorted(inner.encoded) == sorted(CORPUS[:3])
    np.testing.assert_array_equal(out, expected)
    # The recomputed vectors replaced the bad rows.
    again = CachedEncoder(CountingEncoder(tfidf), db)
    again.encode(CORPUS[:4])
    assert again.misses == 0


def test_corrupt_file_is_moved_aside(tfidf, db) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a sqlite database" * 100)
    cached = CachedEncoder(tfidf, db)
    with pytest.warns(RuntimeWarning, match="corrupt"):
        out = cached.encode(CORPUS[:2])
    np.testing.assert_array_equal(out, tfidf.encode(CORPUS[:2]))
    assert list(db.parent.glob("embeddings.sqlite.corrupt-*"))
    assert EmbeddingCache(db).count() == 2


def test_unwritable_cache_does_not_fail_the_encoding(tfidf, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cached = CachedEncoder(tfidf, blocker / "sub" / "embeddings.sqlite")
    with pytest.warns(RuntimeWarning, match="embedding cache"):
        out = cached.encode(CORPUS[:2])
    np.testing.assert_array_equal(out, tfidf.encode(CORPUS[:2]))


def test_concurrent_readers_and_a_writer(tfidf, db) -> None:
    CachedEncoder(tfidf, db).encode(CORPUS)
    keys = [text_hash(t) for t in CORPUS]
    errors: list[BaseException] = []

    def read() -> None:
        try:
            cache = EmbeddingCache(db)  # one connection per reader, as separate processes would have
            for _ in range(20):
                assert len(cache.get_many(tfidf.model_id, keys)) == len(CORPUS)
            cache.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def write() -> None:
        try:
            cache = EmbeddingCache(db)
            for i in range(20):
                cache.put_many("other-model", [(text_hash(f"text {i}"), np.eye(4, dtype=np.float32)[i % 4])])
            cache.close()
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(3)] + [threading.Thread(target=write)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert EmbeddingCache(db).count("other-model") == 20


def test_default_location_honours_env_var(tmp_path, monkeypatch, tfidf) -> None:
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path / "envcache"))
    assert default_cache_path() == tmp_path / "envcache" / "embeddings.sqlite"
    cached = CachedEncoder(tfidf)
    cached.encode(CORPUS[:1])
    assert (tmp_path / "envcache" / "embeddings.sqlite").is_file()
    # A folder given as the path means the default file name inside it.
    assert EmbeddingCache(tmp_path / "envcache").path == tmp_path / "envcache" / "embeddings.sqlite"
