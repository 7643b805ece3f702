"""A tiny deterministic encoder for tests of the distributed jobs (no model files, no network).

Why here and not in the tests: Dask workers are separate processes that import the
encoder by name (``EncoderSpec("leanrec.scale.testing:hash_encoder")``), so it must live
in the installed package. It can also fail on purpose, once or always, to test retries.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from leanrec.encoders.base import l2_normalize, validate_texts

__all__ = ["HashEncoder", "hash_encoder"]


class HashEncoder:
    """Bag of hashed lower-case words, L2-normalised: same text, same bits, in any process.

    ``fail_on_text``: raise ``RuntimeError`` when a batch holds exactly this text; with
    ``fail_once_marker`` (a file path) only while that file does not exist (it is created
    just before raising), so the first attempt fails and a retry succeeds.
    """

    def __init__(self, dim: int = 32, fail_on_text: str | None = None, fail_once_marker: str | None = None):
        self._dim = int(dim)
        self.fail_on_text = fail_on_text
        self.fail_once_marker = fail_once_marker

    @property
    def model_id(self) -> str:
        return f"hash-words:dim={self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None, progress=None) -> np.ndarray:
        items = validate_texts(texts)
        if self.fail_on_text is not None and self.fail_on_text in items:
            marker = Path(self.fail_once_marker) if self.fail_once_marker else None
            if marker is None or not marker.exists():
                if marker is not None:
                    marker.touch()
                raise RuntimeError(f"injected failure on {self.fail_on_text!r} (pid {os.getpid()})")
        out = np.zeros((len(items), self._dim), np.float64)
        for i, text in enumerate(items):
            for word in text.lower().split():
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[i, h % self._dim] += 1.0 if (h >> 32) & 1 else -1.0
        if progress is not None:
            progress(len(items))
        return l2_normalize(out)


def hash_encoder(**options) -> HashEncoder:
    """Factory for ``EncoderSpec("leanrec.scale.testing:hash_encoder", options={...})``."""
    return HashEncoder(**options)
