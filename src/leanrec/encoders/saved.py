"""Encoder folders saved on disk, described by one ``leanrec_encoder.json``.

An exported ONNX model (:mod:`leanrec.encoders.onnx_export`) or a distilled static model
(:mod:`leanrec.encoders.static`) is a folder that a serving machine loads without torch.
The folder's ``leanrec_encoder.json`` says what it holds (``kind``), how it was made
(source model and weights fingerprint, precision, layers, sequence length, the measured
agreement with the torch model) and the ``model_id`` its vectors are cached under, so
:func:`leanrec.encoders.load_saved_encoder` can dispatch on it and an embedding cache
keeps working across machines.

This module imports only the standard library and numpy at import time; the runtime for
each kind (onnxruntime, model2vec) is imported when a folder of that kind is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from leanrec.encoders.base import (
    Encoder,
    ProgressCallback,
    check_batch_size,
    empty_embeddings,
    encode_length_sorted,
    validate_texts,
)

__all__ = [
    "CONFIG_FILENAME",
    "FORMAT_VERSION",
    "SAVED_KINDS",
    "InvalidEncoderFolderError",
    "is_saved_encoder",
    "read_config",
    "write_config",
]

# Helpers shared by the writers (onnx_export, static); not part of the public API.


CONFIG_FILENAME = "leanrec_encoder.json"
#: Bumped when the folder layout changes incompatibly; older readers refuse newer folders.
FORMAT_VERSION = 1
SAVED_KINDS = ("onnx", "static")


class InvalidEncoderFolderError(ValueError):
    """A saved encoder folder is missing its config or the config is malformed."""


def is_saved_encoder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder holding a ``leanrec_encoder.json`` (not checked further)."""
    folder = Path(path).expanduser()
    return folder.is_dir() and (folder / CONFIG_FILENAME).is_file()


def read_config(path: str | os.PathLike[str], *, kind: str | None = None) -> dict[str, Any]:
    """Read and check a folder's ``leanrec_encoder.json``.

    Raises :class:`InvalidEncoderFolderError` naming the file and the field when the file is
    missing, is not JSON, or lacks a required field; ``kind`` additionally requires that kind.
    """
    folder = Path(path).expanduser()
    file = folder / CONFIG_FILENAME
    if not folder.is_dir():
        raise InvalidEncoderFolderError(f"{folder} is not a folder (expected a saved encoder folder with {CONFIG_FILENAME})")
    if not file.is_file():
        raise InvalidEncoderFolderError(f"{file} is missing: {folder} is not a saved leanrec encoder folder")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidEncoderFolderError(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise InvalidEncoderFolderError(f"{file} must hold a JSON object, got {type(config).__name__}")

    def field(name: str, types: type | tuple[type, ...]) -> Any:
        value = config.get(name)
        if value is None or isinstance(value, bool) or not isinstance(value, types):
            raise InvalidEncoderFolderError(f"{file}: field {name!r} is missing or malformed (got {value!r})")
        return value

    found_kind = field("kind", str)
    if found_kind not in SAVED_KINDS:
        raise InvalidEncoderFolderError(f"{file}: field 'kind' must be one of {', '.join(SAVED_KINDS)}, got {found_kind!r}")
    if kind is not None and found_kind != kind:
        raise InvalidEncoderFolderError(f"{file}: field 'kind' is {found_kind!r}, expected {kind!r}")
    version = field("format_version", int)
    if version > FORMAT_VERSION:
        raise InvalidEncoderFolderError(
            f"{file}: field 'format_version' is {version}, newer than this leanrec reads ({FORMAT_VERSION}); upgrade leanrec"
        )
    if not field("model_id", str).strip():
        raise InvalidEncoderFolderError(f"{file}: field 'model_id' is empty")
    if field("dim", int) < 1:
        raise InvalidEncoderFolderError(f"{file}: field 'dim' must be positive")
    return config


def write_config(folder: Path, config: dict[str, Any]) -> None:
    """Write ``leanrec_encoder.json`` atomically (a reader never sees half a file)."""
    fd, tmp = tempfile.mkstemp(prefix=".leanrec_encoder-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(config, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, folder / CONFIG_FILENAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def new_build_folder(out: Path) -> Path:
    """Check ``out`` may be written and return a fresh temporary folder beside it.

    Writers build there and :func:`publish_folder` renames it onto ``out``, so ``out`` is
    either absent or complete, never half written (and two processes building the same
    folder cannot interleave files).
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} already exists and is not an empty folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))


def publish_folder(tmp: Path, out: Path) -> None:
    """Give ``tmp`` normal permissions and rename it onto ``out`` (absent or empty)."""
    umask = os.umask(0)
    os.umask(umask)
    for entry in tmp.rglob("*"):  # mkdtemp/mkstemp create owner-only entries
        entry.chmod((0o777 if entry.is_dir() else 0o666) & ~umask)
    tmp.chmod(0o777 & ~umask)
    if out.exists():
        out.rmdir()  # rename cannot replace a folder; OSError if someone filled it meanwhile
    os.replace(tmp, out)


def discard_folder(tmp: Path) -> None:
    shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def package_versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` (recorded in configs to explain differences later)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


class SavedFolderEncoder:
    """Shared plumbing of the encoders that run from a saved folder.

    Follows the scikit-learn estimator contract without importing scikit-learn (seconds
    on a small machine, and the point of these encoders is a light serving process): the
    constructor only stores its parameters, ``get_params``/``set_params`` expose them so
    ``sklearn.base.clone`` works, and the folder is read lazily. Subclasses set ``_kind``
    and implement ``_load_runtime`` and ``_encode_batch``.
    """

    _kind = ""
    _param_names: tuple[str, ...] = ("path", "batch_size")
    _default_batch_size = 32

    path: str
    batch_size: int

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names}

    def set_params(self, **params: Any) -> SavedFolderEncoder:
        for name, value in params.items():
            if name not in self._param_names:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}")
            setattr(self, name, value)
        self.__dict__.pop("_state", None)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_state", None)  # sessions do not pickle; they reload on demand
        return state

    def config(self) -> dict[str, Any]:
        """The folder's checked ``leanrec_encoder.json`` (read once per parameter set)."""
        return self._loaded()[1]

    def _loaded(self) -> tuple[Any, dict[str, Any]]:
        key = tuple(self.get_params().items())
        state = self.__dict__.get("_state")
        if state is not None and state[0] == key:
            return state[1], state[2]
        config = read_config(self.path, kind=self._kind)
        runtime = self._load_runtime(Path(self.path).expanduser(), config)
        self.__dict__["_state"] = (key, runtime, config)
        return runtime, config

    def load(self) -> SavedFolderEncoder:
        """Load the runtime now (otherwise it loads on the first ``encode``)."""
        self._loaded()
        return self

    @property
    def model_id(self) -> str:
        """The ``model_id`` recorded at export time (it names the source weights and options)."""
        return str(self.config()["model_id"])

    @property
    def dim(self) -> int:
        return int(self.config()["dim"])

    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Return ``float32[len(texts), dim]`` unit rows; see :class:`~leanrec.encoders.base.Encoder`.

        Texts are sorted by length (longest first) before batching so that each batch pads
        to similar lengths, then rows are put back in input order.
        """
        docs = validate_texts(texts)
        size = check_batch_size(batch_size, check_batch_size(self.batch_size, self._default_batch_size))
        runtime, config = self._loaded()
        dim = int(config["dim"])
        if not docs:
            return empty_embeddings(dim)

        def run_batch(batch: list[str]) -> np.ndarray:
            vecs = np.asarray(self._encode_batch(runtime, batch))
            if vecs.shape != (len(batch), dim):
                raise RuntimeError(
                    f"{self.path}: the saved model returned shape {vecs.shape}, expected {(len(batch), dim)}; "
                    f"{CONFIG_FILENAME} does not match the model files"
                )
            return vecs

        return encode_length_sorted(docs, size, run_batch, progress)

    def _load_runtime(self, folder: Path, config: dict[str, Any]) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _encode_batch(self, runtime: Any, texts: list[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError
