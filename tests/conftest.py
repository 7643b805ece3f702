"""Shared fixtures: every test runs offline and writes its caches under a temporary folder."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch, request):
    """Each test gets its own cache folder, except the MovieLens integration tests, which reuse
    the user's cache (so the download and the embedding cache are shared across runs)."""
    if "ml100k" not in request.keywords and "ml1m" not in request.keywords:
        monkeypatch.setenv("LEANREC_CACHE_DIR", str(tmp_path / "cache"))
    yield


@pytest.fixture(scope="session")
def synthetic():
    from leanrec.data.synth import make_dataset

    return make_dataset(n_users=150, n_items=90, seed=3)
