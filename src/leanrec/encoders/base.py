"""The one contract every text encoder in leanrec follows.

Models, the embedding cache and the CLI only ever talk to an :class:`Encoder`, so a
TF-IDF baseline, a sentence-transformer and a cached wrapper around either are
interchangeable. The contract is deliberately small:

* ``model_id``: a string that changes whenever the vectors would change (model name,
  a fingerprint of the weights or fitted state, and every option that affects the
  output). The embedding cache keys on it, so two encoders with the same ``model_id``
  must return the same vectors for the same text.
* ``dim``: the width of every vector.
* ``encode(texts)``: a ``float32`` array of shape ``(len(texts), dim)`` whose rows are
  L2-normalised, so a dot product is a cosine similarity. A row is the zero vector only
  when the encoder knows none of the text's tokens (possible for TF-IDF, whose
  vocabulary is learned from a corpus; a sentence-transformer always produces a unit
  vector). An empty list gives shape ``(0, dim)``.

Inputs are checked once, here (:func:`validate_texts`), so every encoder rejects the same
bad input the same way: a ``ValueError`` that names the index of the first offending
text, instead of a silent garbage vector for ``None`` or ``""``.

``progress`` exists so that a CLI can drive a progress bar: it is called with the number
of texts just finished (the calls sum to ``len(texts)``). The library itself never
prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

ProgressCallback = Callable[[int], None]

__all__ = [
    "Encoder",
    "ProgressCallback",
    "l2_normalize",
    "validate_texts",
    "check_batch_size",
    "iter_batches",
    "empty_embeddings",
    "encode_length_sorted",
]


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors.

    ``isinstance(obj, Encoder)`` checks that the three members exist. On Python 3.11
    that check reads the attributes, so an encoder whose ``dim``/``model_id`` are not
    known yet (an unfitted :class:`~leanrec.encoders.tfidf.TfidfEncoder`) is, correctly,
    not yet an ``Encoder``.
    """

    # Read-only properties rather than plain annotations so that implementations may
    # compute them (TF-IDF from its fitted state, sentence-transformers from its files)
    # and still satisfy type checkers.
    @property
    def model_id(self) -> str:
        """Changes whenever the vectors would change; the embedding cache keys on it."""
        ...

    @property
    def dim(self) -> int:
        """Width of every output vector."""
        ...

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Return ``float32[len(texts), dim]`` with L2-normalised rows.

        ``progress(k)`` is called after each chunk with the number of texts just
        finished. A text that is not a non-empty string raises ``ValueError`` naming
        its index.
        """
        ...


def l2_normalize(x: np.ndarray, *, eps: float = 1e-12) -> np.ndarray:
    """Return ``x`` as float32 with every row scaled to unit L2 norm.

    Rows whose norm is below ``eps`` (all-zero rows, e.g. a TF-IDF text with no known
    token) are left as zeros rather than divided by ~0, which would produce NaN/inf.
    Accepts a 1-D vector (treated as one row) or a 2-D matrix; never modifies ``x``.
    """
    arr = np.asarray(x)
    if arr.ndim not in (1, 2):
        raise ValueError(f"expected a 1-D or 2-D array, got shape {arr.shape}")
    # Normalise in float64 so that float32 rows come out with a norm of 1 to ~1e-7.
    as64 = arr.astype(np.float64, copy=True)
    norms = np.linalg.norm(as64, axis=-1, keepdims=True)
    np.divide(as64, norms, out=as64, where=norms >= eps)
    as64[np.broadcast_to(norms < eps, as64.shape)] = 0.0
    return as64.astype(np.float32)


def validate_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list after checking each is a non-empty string.

    Why so strict: ``None``, numbers and blank strings usually mean a broken upstream
    join (an item without a description), and encoding them would silently produce a
    meaningless vector. Whitespace-only strings count as empty.

    A single ``str`` is refused with ``TypeError``: it is itself a sequence of strings
    and would otherwise be encoded one character at a time.
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a sequence of strings, not a single string; wrap it in a list")
    try:
        items = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a sequence of strings, got {type(texts).__name__}") from None
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise ValueError(f"text at index {i} is not a string (got {type(text).__name__}: {text!r:.60})")
        if not text.strip():
            raise ValueError(f"text at index {i} is empty or whitespace-only")
    return items


def check_batch_size(batch_size: int | None, default: int) -> int:
    """Return ``batch_size`` (or ``default`` when None) after checking it is a positive int."""
    size = default if batch_size is None else batch_size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {size!r}")
    return int(size)


def iter_batches(n: int, batch_size: int) -> Iterator[slice]:
    """Yield consecutive slices of at most ``batch_size`` covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def empty_embeddings(dim: int) -> np.ndarray:
    """The ``(0, dim)`` float32 result for an empty input list."""
    return np.zeros((0, int(dim)), dtype=np.float32)


def encode_length_sorted(
    docs: list[str],
    batch_size: int,
    run_batch: Callable[[list[str]], np.ndarray],
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Encode ``docs`` in batches of similar length; rows come back in input order.

    Why: a transformer pads every text of a batch to the batch's longest, so sorting by
    length (longest first, as sentence-transformers does) wastes the least compute, while
    our own batching lets ``progress`` be called after each batch. ``run_batch`` returns
    ``float[len(batch), d]``; rows are L2-normalised here. ``docs`` must be non-empty.
    """
    order = np.argsort([-len(t) for t in docs], kind="stable")
    out: np.ndarray | None = None
    for rows in iter_batches(len(docs), batch_size):
        idx = order[rows]
        vecs = np.asarray(run_batch([docs[i] for i in idx]))
        if out is None:
            out = np.empty((len(docs), vecs.shape[1]), dtype=np.float32)
        out[idx] = l2_normalize(vecs)
        if progress is not None:
            progress(len(idx))
    assert out is not None, "encode_length_sorted needs at least one text"
    return out
