"""Plumbing shared by codecs and indexes: the estimator contract, input checks, file layout.

Why not :class:`sklearn.base.BaseEstimator`? Importing scikit-learn costs ~2 s on a small
machine, and a serving process that only loads an index from disk should not pay it. The
:class:`Params` mixin gives the same contract (``get_params``/``set_params`` read the
constructor signature, so ``sklearn.base.clone`` works on these objects too).

Every check raises a ``ValueError`` that names the offending argument, once, here, so all
codecs and indexes reject bad input the same way. Using a codec or index before
``fit``/``build`` raises :class:`leanrec.core.errors.NotFittedError` (a ``ValueError`` and an
``AttributeError``, as scikit-learn's is).

On disk every object is a folder with one ``<kind>.json`` (class, constructor parameters,
small learned scalars, a format number) next to ``.npy`` arrays or a faiss index file: no
pickle, so loading a file from elsewhere cannot run code.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1


class Params:
    """scikit-learn's parameter contract without importing scikit-learn.

    Constructors store their arguments unchanged under the same names; learned state ends
    in ``_`` and is set by ``fit``/``build`` only.
    """

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any):
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; "
                                 f"valid parameters: {sorted(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        shown = []
        for name, value in self.get_params().items():
            default = sig.parameters[name].default
            if default is inspect.Parameter.empty or value is not default and value != default:
                shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


# -- input checks -------------------------------------------------------------------

def check_matrix(x: Any, name: str, *, dim: int | None = None, allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 ``[n, d]`` matrix, or raise ``ValueError``.

    Refuses non-2-D input, a width other than ``dim``, NaN/inf (a NaN vector silently
    scores NaN against everything and breaks every sort), and, unless ``allow_empty``,
    zero rows.
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} must be a 2-D float array: {exc}") from None
    if arr.dtype.kind not in "biufc":  # numbers and bools (a dtype's kind: no issubdtype walk per call)
        raise ValueError(f"{name} must be a numeric 2-D array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [n, d], got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has {arr.shape[1]} dimensions, expected {dim}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (0 rows)")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has 0 dimensions")
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise ValueError(f"{name} contains NaN or infinite values (first at row {bad})")
    return out


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_choice(value: Any, name: str, choices: tuple) -> Any:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


# -- files ----------------------------------------------------------------------------

def write_config(folder: str | os.PathLike, kind: str, obj: Any, params: Mapping[str, Any],
                 state: Mapping[str, Any] | None = None) -> Path:
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    doc = {"format": FORMAT_VERSION, "kind": kind, "class": type(obj).__name__,
           "params": dict(params), "state": dict(state or {})}
    (path / f"{kind}.json").write_text(json.dumps(doc, indent=2, sort_keys=True))
    return path


def read_config(folder: str | os.PathLike, kind: str) -> dict[str, Any]:
    path = Path(folder) / f"{kind}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no saved {kind} in {os.fspath(folder)!r} (missing {path.name})")
    doc = json.loads(path.read_text())
    if doc.get("format") != FORMAT_VERSION or doc.get("kind") != kind:
        raise ValueError(f"{path} is not a leanrec {kind} (format {doc.get('format')!r})")
    return doc


def save_arrays(folder: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    for name, arr in arrays.items():
        np.save(Path(folder) / f"{name}.npy", np.asarray(arr), allow_pickle=False)


def load_array(folder: str | os.PathLike, name: str, *, mmap: bool = False) -> np.ndarray:
    """Load ``name.npy``; ``mmap=True`` maps it read-only instead of reading it into RAM."""
    return np.load(Path(folder) / f"{name}.npy", allow_pickle=False, mmap_mode="r" if mmap else None)
