"""Vector codecs: fewer bytes per item vector, scored directly against float queries.

An item catalogue is a float32 ``[n_items, d]`` matrix of L2-normalised rows; 384 dims
cost 1.5 KB an item, which is what decides whether a catalogue fits in a small machine's
memory. A :class:`VectorCodec` stores the same items in fewer bytes and still answers the
one question recommenders ask, ``scores(queries, codes)``: the inner product of each
(float, not necessarily unit-norm) user vector with each stored item. Queries are never
quantised: the asymmetric form loses less ranking quality and costs nothing in memory.

The contract (every codec here, checked by one shared test):

* ``fit(X) -> self`` learns what the code needs (ranges, centroids, a projection);
  constructors only store parameters, learned state ends in ``_``;
* ``encode(X) -> codes``: a 2-D array, one row per item, ``bytes_per_item`` bytes a row
  (exactly ``codes.nbytes / n``);
* ``decode(codes) -> float32[n, dim_out]`` and ``transform_queries(q) ->
  float32[q, dim_out]`` live in the same space, so that ``scores(q, codes) ==
  transform_queries(q) @ decode(codes).T`` up to float rounding. ``dim_out`` differs from
  ``dim_in`` only for the projecting codecs (PCA, truncation);
* ``save(folder)`` / ``Class.load(folder)`` (or :func:`load_codec`): JSON plus ``.npy``.

:func:`make_codec` builds one from a short spec string (``"int8"``, ``"pq48x8"``,
``"pca128-int8"`` ...); a codec's ``name`` is such a spec, so ``make_codec(c.name)``
rebuilds an equivalent, unfitted codec.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..core.errors import NotFittedError
from ._base import (
    Params,
    check_choice,
    check_matrix,
    check_positive_int,
    load_array,
    read_config,
    save_arrays,
    write_config,
)

__all__ = [
    "VectorCodec",
    "Float32Codec",
    "Float16Codec",
    "Int8Codec",
    "BinaryCodec",
    "PQCodec",
    "PCACodec",
    "TruncateCodec",
    "CODEC_SPECS",
    "make_codec",
    "load_codec",
]


@runtime_checkable
class VectorCodec(Protocol):
    """Compresses item vectors and scores float queries against the compressed codes."""

    @property
    def name(self) -> str: ...
    @property
    def dim_in(self) -> int: ...
    @property
    def dim_out(self) -> int: ...
    @property
    def bytes_per_item(self) -> int: ...

    def fit(self, X: np.ndarray, y: Any = None) -> "VectorCodec": ...
    def encode(self, X: np.ndarray) -> np.ndarray: ...
    def decode(self, codes: np.ndarray) -> np.ndarray: ...
    def transform_queries(self, queries: np.ndarray) -> np.ndarray: ...
    def scores(self, queries: np.ndarray, codes: np.ndarray) -> np.ndarray: ...
    def save(self, folder: str | os.PathLike) -> Path: ...


class _Codec(Params):
    """Input checks, fitted-state checks and save/load around a few ``_`` hooks."""

    #: dtype of the codes; a class attribute because it never depends on the data.
    code_dtype: np.dtype = np.dtype(np.float32)
    #: names of the learned arrays saved as ``.npy`` (and counted by ``params_nbytes``).
    _arrays: tuple[str, ...] = ()

    # -- hooks ----------------------------------------------------------------------
    def _fit(self, X: np.ndarray) -> None:
        pass

    def _code_width(self) -> int:
        return self.dim_in_

    def _encode(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _decode(self, codes: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _transform(self, q: np.ndarray) -> np.ndarray:
        return q

    def _scores(self, tq: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return tq @ self._decode(codes).T

    # -- public API -----------------------------------------------------------------
    def fit(self, X, y=None):
        """Learn the code from the item vectors ``X`` (float32 ``[n, d]``); returns self."""
        X = check_matrix(X, "X")
        self._check_params(X)
        self.dim_in_ = int(X.shape[1])
        self._fit(X)
        return self

    def _check_params(self, X: np.ndarray) -> None:
        pass

    def _check_fitted(self) -> None:
        if not hasattr(self, "dim_in_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted: call fit(X) first")

    @property
    def dim_in(self) -> int:
        """Width of the vectors ``encode`` and ``scores`` accept."""
        self._check_fitted()
        return self.dim_in_

    @property
    def dim_out(self) -> int:
        """Width of ``decode`` and ``transform_queries`` output."""
        return self.dim_in

    @property
    def code_width(self) -> int:
        """Columns of a code array."""
        self._check_fitted()
        return int(self._code_width())

    @property
    def bytes_per_item(self) -> int:
        """In-memory bytes of one item's code (the parameters are shared, see ``params_nbytes``)."""
        return self.code_width * self.code_dtype.itemsize

    @property
    def params_nbytes(self) -> int:
        """Bytes of the learned parameters shared by all items (ranges, centroids, projection)."""
        self._check_fitted()
        return int(sum(getattr(self, a).nbytes for a in self._arrays))

    def encode(self, X) -> np.ndarray:
        """Codes for the item vectors ``X``: ``[n, code_width]`` of ``code_dtype``."""
        self._check_fitted()
        X = check_matrix(X, "X", dim=self.dim_in_, allow_empty=True)
        return np.ascontiguousarray(self._encode(X), dtype=self.code_dtype)

    def decode(self, codes) -> np.ndarray:
        """float32 ``[n, dim_out]`` approximations of the encoded items."""
        codes = self._check_codes(codes)
        return np.ascontiguousarray(self._decode(codes), dtype=np.float32)

    def transform_queries(self, queries) -> np.ndarray:
        """Queries mapped into the space of ``decode``: identity except for projections."""
        self._check_fitted()
        q = check_matrix(queries, "queries", dim=self.dim_in_, allow_empty=True)
        return np.ascontiguousarray(self._transform(q), dtype=np.float32)

    def scores(self, queries, codes) -> np.ndarray:
        """float32 ``[n_queries, n_items]``: each query's inner product with each coded item."""
        tq = self.transform_queries(queries)
        codes = self._check_codes(codes)
        return np.ascontiguousarray(self._scores(tq, codes), dtype=np.float32)

    def _check_codes(self, codes) -> np.ndarray:
        self._check_fitted()
        arr = np.asarray(codes)
        if arr.ndim != 2 or arr.shape[1] != self._code_width():
            raise ValueError(f"codes must have shape [n, {self._code_width()}] for {self.name}, "
                             f"got {arr.shape}")
        if arr.dtype != self.code_dtype:
            raise ValueError(f"codes must have dtype {self.code_dtype} for {self.name}, got {arr.dtype}")
        return arr

    @property
    def name(self) -> str:
        raise NotImplementedError

    # -- persistence ----------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"dim_in": self.dim_in_}

    def _set_state(self, state: dict[str, Any], folder: Path) -> None:
        self.dim_in_ = int(state["dim_in"])
        for a in self._arrays:
            setattr(self, a, load_array(folder, a))

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``codec.json`` and the learned arrays into ``folder`` (created if needed)."""
        self._check_fitted()
        path = write_config(folder, "codec", self, self.get_params(), self._state())
        save_arrays(path, {a: getattr(self, a) for a in self._arrays})
        self._save_extra(path)
        return path

    def _save_extra(self, path: Path) -> None:
        pass

    @classmethod
    def load(cls, folder: str | os.PathLike):
        """Read a codec written by ``save``; refuses a folder holding another codec class."""
        codec = load_codec(folder)
        if not isinstance(codec, cls):
            raise ValueError(f"{os.fspath(folder)!r} holds a {type(codec).__name__}, not a {cls.__name__}")
        return codec


class Float32Codec(_Codec):
    """The uncompressed reference: 4 bytes a dimension."""

    code_dtype = np.dtype(np.float32)

    def __init__(self):
        pass

    name = property(lambda self: "fp32")

    def _encode(self, X):
        return X.copy()

    def _decode(self, codes):
        return codes.astype(np.float32, copy=True)

    def _scores(self, tq, codes):
        return tq @ codes.T


class Float16Codec(_Codec):
    """Half precision: 2 bytes a dimension, ~1e-3 relative error on unit vectors."""

    code_dtype = np.dtype(np.float16)

    def __init__(self):
        pass

    name = property(lambda self: "fp16")

    def _encode(self, X):
        codes = X.astype(np.float16)
        if not np.isfinite(codes).all():
            raise ValueError("X has values beyond float16 range (|x| > 65504)")
        return codes

    def _decode(self, codes):
        return codes.astype(np.float32)

    def _scores(self, tq, codes):
        return tq @ codes.astype(np.float32).T


class Int8Codec(_Codec):
    """One byte a dimension: each dimension's range, learned on the fit data, cut in 256 steps.

    ``calibration="minmax"`` uses each dimension's observed range; ``"quantile"`` uses the
    ``[1 - quantile, quantile]`` quantiles, so that a few outliers do not stretch the step
    for everyone (values outside are clipped). Scores are computed without decoding:
    ``q . x = (q * step) . (code + 128) + q . low``.
    """

    code_dtype = np.dtype(np.int8)
    _arrays = ("low_", "step_")

    def __init__(self, calibration: str = "minmax", quantile: float = 0.999):
        self.calibration = calibration
        self.quantile = quantile

    @property
    def name(self) -> str:
        return "int8" if self.calibration == "minmax" else f"int8-q{self.quantile:g}"

    def _check_params(self, X):
        check_choice(self.calibration, "calibration", ("minmax", "quantile"))
        if self.calibration == "quantile":
            q = self.quantile
            if isinstance(q, bool) or not isinstance(q, (int, float, np.floating)) or not 0.5 < q <= 1:
                raise ValueError(f"quantile must be in (0.5, 1], got {q!r}")

    def _fit(self, X):
        if self.calibration == "minmax":
            low, high = X.min(axis=0), X.max(axis=0)
        else:
            low = np.quantile(X, 1.0 - self.quantile, axis=0)
            high = np.quantile(X, self.quantile, axis=0)
        step = (high.astype(np.float64) - low) / 255.0
        step[step <= 0] = 1.0  # constant dimension: every code decodes to ``low`` anyway
        self.low_ = low.astype(np.float32)
        self.step_ = step.astype(np.float32)

    def _encode(self, X):
        high = self.low_ + 255.0 * self.step_
        levels = np.rint((np.clip(X, self.low_, high) - self.low_) / self.step_)
        return (np.clip(levels, 0, 255) - 128).astype(np.int8)

    def _decode(self, codes):
        return (codes.astype(np.float32) + 128.0) * self.step_ + self.low_

    def _scores(self, tq, codes):
        return (tq * self.step_) @ (codes.astype(np.float32) + 128.0).T + (tq @ self.low_)[:, None]


class BinaryCodec(_Codec):
    """One bit a dimension: the sign, packed 8 to a byte (``ceil(d / 8)`` bytes an item).

    ``decode`` gives ``+-1 / sqrt(d)`` (a unit vector), and ``scores`` are the float
    query's inner product with it: asymmetric scoring, which ranks better than the
    Hamming distance between binarised query and item (what
    :class:`~leanrec.vectors.binary.BinaryRescoreIndex` uses as its cheap first stage).
    Needs nothing learned, but ``fit`` is still required so that the width is known.
    """

    code_dtype = np.dtype(np.uint8)

    def __init__(self):
        pass

    name = property(lambda self: "binary")

    def _code_width(self):
        return (self.dim_in_ + 7) // 8

    def _encode(self, X):
        return np.packbits(X > 0, axis=1)

    def _decode(self, codes):
        bits = np.unpackbits(codes, axis=1, count=self.dim_in_).astype(np.float32)
        return (2.0 * bits - 1.0) / np.float32(np.sqrt(self.dim_in_))


class PQCodec(_Codec):
    """Product quantisation (faiss ``ProductQuantizer``): ``m`` sub-vectors, each replaced by
    the id of its nearest of ``2**nbits`` centroids learned on the fit data.

    ``m * nbits / 8`` bytes an item (``pq64x8`` = 64 bytes for 384 dims, 24x smaller than
    fp32). ``d`` must be divisible by ``m`` and fitting needs at least ``2**nbits``
    vectors. Scores are asymmetric (float query . decoded centroids), computed by
    decoding a chunk and one matrix product: the same numbers as faiss' lookup tables,
    and faster in numpy than gathering from them.
    """

    code_dtype = np.dtype(np.uint8)
    _arrays = ("centroids_",)

    def __init__(self, m: int = 64, nbits: int = 8):
        self.m = m
        self.nbits = nbits

    @property
    def name(self) -> str:
        return f"pq{self.m}x{self.nbits}"

    def _check_params(self, X):
        m = check_positive_int(self.m, "m")
        nbits = check_positive_int(self.nbits, "nbits")
        if nbits > 16:
            raise ValueError(f"nbits must be between 1 and 16, got {nbits}")
        if X.shape[1] % m:
            raise ValueError(f"m={m} must divide the vector dimension {X.shape[1]}")
        if X.shape[0] < 2 ** nbits:
            raise ValueError(f"PQ with nbits={nbits} needs at least {2 ** nbits} vectors to fit, "
                             f"got {X.shape[0]}")

    def _fit(self, X):
        import faiss

        pq = faiss.ProductQuantizer(X.shape[1], int(self.m), int(self.nbits))
        pq.cp.min_points_per_centroid = 1  # we checked n >= 2**nbits; don't let faiss print
        pq.train(X)
        self.centroids_ = faiss.vector_to_array(pq.centroids).reshape(
            int(self.m), 2 ** int(self.nbits), X.shape[1] // int(self.m))
        self._faiss_pq = pq

    def _pq(self):
        pq = self.__dict__.get("_faiss_pq")
        if pq is None:
            import faiss

            pq = faiss.ProductQuantizer(self.dim_in_, int(self.m), int(self.nbits))
            faiss.copy_array_to_vector(np.ascontiguousarray(self.centroids_, np.float32).ravel(),
                                       pq.centroids)
            self._faiss_pq = pq
        return pq

    def __getstate__(self):  # copy/deepcopy: the faiss object is rebuilt from centroids_
        state = self.__dict__.copy()
        state.pop("_faiss_pq", None)
        return state

    def _code_width(self):
        return (int(self.m) * int(self.nbits) + 7) // 8

    def _encode(self, X):
        if len(X) == 0:
            return np.zeros((0, self._code_width()), np.uint8)
        return self._pq().compute_codes(X)

    def _decode(self, codes):
        if len(codes) == 0:
            return np.zeros((0, self.dim_in_), np.float32)
        return self._pq().decode(np.ascontiguousarray(codes))

    def _set_state(self, state, folder):
        super()._set_state(state, folder)
        self.__dict__.pop("_faiss_pq", None)


def _normalize_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X.astype(np.float64), axis=1, keepdims=True)
    out = np.divide(X, norms, out=np.zeros(X.shape, np.float64), where=norms > 1e-12)
    return out.astype(np.float32)


_INNER = {"fp32": Float32Codec, "fp16": Float16Codec, "int8": Int8Codec}


class _ProjectedCodec(_Codec):
    """Map items to ``dims`` dimensions, then store them with an inner fp32/fp16/int8 codec.

    ``decode`` returns the projected space and ``transform_queries`` projects queries the
    same way, so scores stay ``query . item`` computed in the smaller space.
    """

    def _project(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_params(self, X):
        dims = check_positive_int(self.dims, "dims")
        if dims > X.shape[1]:
            raise ValueError(f"dims={dims} exceeds the vector dimension {X.shape[1]}")
        check_choice(self.then, "then", tuple(_INNER))

    def _items(self, X):
        return self._project(X)

    def _fit(self, X):
        self._fit_projection(X)
        self.inner_ = _INNER[self.then]().fit(self._items(X))

    def _fit_projection(self, X):
        pass

    @property
    def dim_out(self) -> int:
        self._check_fitted()
        return int(self.dims)

    @property
    def code_dtype(self):  # type: ignore[override]
        return _INNER[self.then].code_dtype

    def _code_width(self):
        return self.inner_._code_width()

    @property
    def params_nbytes(self) -> int:
        return super().params_nbytes + self.inner_.params_nbytes

    def _encode(self, X):
        return self.inner_._encode(self._items(X))

    def _decode(self, codes):
        return self.inner_._decode(codes)

    def _transform(self, q):
        return self._project(q)

    def _scores(self, tq, codes):
        return self.inner_._scores(tq, codes)

    def _suffix(self) -> str:
        return "" if self.then == "fp32" else f"-{self.then}"

    def _save_extra(self, path):
        self.inner_.save(path / "inner")

    def _set_state(self, state, folder):
        super()._set_state(state, folder)
        self.inner_ = load_codec(folder / "inner")


class PCACodec(_ProjectedCodec):
    """Project onto the top ``dims`` principal directions, then store with ``then``.

    The directions are the top eigenvectors of the *uncentred* second moment ``X^T X``
    (an SVD of the item matrix), not of the covariance: with an orthonormal projection
    ``W``, ``(q W) . (x W)`` equals ``q . x`` minus the part of ``x`` in the dropped
    directions, so inner products are preserved up to the dropped components, with no
    mean offset to carry around. ``retained_energy_`` is the share of ``sum ||x||^2``
    kept. Fitting is one ``d x d`` eigendecomposition, cheap for any n.
    """

    _arrays = ("components_",)

    def __init__(self, dims: int = 128, then: str = "fp32"):
        self.dims = dims
        self.then = then

    @property
    def name(self) -> str:
        return f"pca{self.dims}{self._suffix()}"

    def _fit_projection(self, X):
        X64 = X.astype(np.float64)
        second = X64.T @ X64
        eigvals, eigvecs = np.linalg.eigh(second)
        order = np.argsort(eigvals)[::-1][: int(self.dims)]
        comps = eigvecs[:, order]
        # Fix the sign (eigh's is arbitrary) so refits on the same data agree.
        flip = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(comps.shape[1])])
        comps *= np.where(flip == 0, 1.0, flip)
        self.components_ = comps.astype(np.float32)
        total = float(np.trace(second))
        self.retained_energy_ = float(eigvals[order].sum() / total) if total > 0 else 1.0

    def _project(self, X):
        return X @ self.components_

    def _state(self):
        return {**super()._state(), "retained_energy": self.retained_energy_}

    def _set_state(self, state, folder):
        super()._set_state(state, folder)
        self.retained_energy_ = float(state["retained_energy"])


class TruncateCodec(_ProjectedCodec):
    """Keep the first ``dims`` dimensions (Matryoshka-trained models put the most there).

    Queries are truncated the same way. With ``renormalize=True`` the truncated items are
    scaled back to unit norm (cosine on the kept prefix, the usual choice for Matryoshka
    embeddings); by default they are not, so scores are the exact partial inner product.
    """

    def __init__(self, dims: int = 128, then: str = "fp32", renormalize: bool = False):
        self.dims = dims
        self.then = then
        self.renormalize = renormalize

    @property
    def name(self) -> str:
        return f"trunc{self.dims}{self._suffix()}" + ("-renorm" if self.renormalize else "")

    def _project(self, X):
        return X[:, : int(self.dims)]

    def _items(self, X):
        Z = self._project(X)
        return _normalize_rows(Z) if self.renormalize else Z


_CODECS = {c.__name__: c for c in (Float32Codec, Float16Codec, Int8Codec, BinaryCodec, PQCodec,
                                   PCACodec, TruncateCodec)}

#: The forms :func:`make_codec` accepts.
CODEC_SPECS = (
    "fp32", "fp16", "int8", "int8-quantile", "int8-q<quantile> (e.g. int8-q0.995)", "binary",
    "pq<m> (nbits 8)", "pq<m>x<nbits>", "pca<dims>[-fp16|-int8]", "trunc<dims>[-fp16|-int8][-renorm]",
)

_PQ_RE = re.compile(r"pq(\d+)(?:x(\d+))?")
_PROJ_RE = re.compile(r"(pca|trunc)(\d+)((?:-(?:fp32|fp16|int8|renorm))*)")
_INT8_Q_RE = re.compile(r"int8-q(\d*\.?\d+)")


def make_codec(spec: str) -> _Codec:
    """Build an unfitted codec from a spec string; see :data:`CODEC_SPECS`.

    ``"fp32"``, ``"fp16"``, ``"int8"`` (min-max), ``"int8-quantile"`` / ``"int8-q0.995"``,
    ``"binary"``, ``"pq64"`` (= ``pq64x8``), ``"pq48x8"``, ``"pca128"``, ``"pca128-int8"``,
    ``"trunc128"``, ``"trunc128-fp16-renorm"``. Case-insensitive.
    """
    if not isinstance(spec, str):
        raise TypeError(f"codec spec must be a string, got {type(spec).__name__}")
    s = spec.strip().lower()
    if s in ("fp32", "float32"):
        return Float32Codec()
    if s in ("fp16", "float16"):
        return Float16Codec()
    if s == "int8":
        return Int8Codec()
    if s == "int8-quantile":
        return Int8Codec(calibration="quantile")
    if s == "binary":
        return BinaryCodec()
    if m := _INT8_Q_RE.fullmatch(s):
        return Int8Codec(calibration="quantile", quantile=float(m.group(1)))
    if m := _PQ_RE.fullmatch(s):
        return PQCodec(m=int(m.group(1)), nbits=int(m.group(2) or 8))
    if m := _PROJ_RE.fullmatch(s):
        tokens = [t for t in m.group(3).split("-") if t]
        then = [t for t in tokens if t != "renorm"]
        if len(then) > 1 or len(set(tokens)) != len(tokens) or (m.group(1) == "pca" and "renorm" in tokens):
            raise ValueError(f"invalid codec spec {spec!r}; valid forms: {', '.join(CODEC_SPECS)}")
        kwargs: dict[str, Any] = {"dims": int(m.group(2)), "then": then[0] if then else "fp32"}
        if m.group(1) == "pca":
            return PCACodec(**kwargs)
        return TruncateCodec(**kwargs, renormalize="renorm" in tokens)
    raise ValueError(f"unknown codec spec {spec!r}; valid forms: {', '.join(CODEC_SPECS)}")


def load_codec(folder: str | os.PathLike) -> _Codec:
    """Load any codec written by ``save`` (the class is read from ``codec.json``)."""
    doc = read_config(folder, "codec")
    cls = _CODECS.get(doc["class"])
    if cls is None:
        raise ValueError(f"unknown codec class {doc['class']!r} in {os.fspath(folder)!r}")
    codec = cls(**doc["params"])
    codec._set_state(doc["state"], Path(folder))
    return codec
