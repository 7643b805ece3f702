"""Cached fine-tunes: one folder per (data, base weights, settings), reused when complete.

Why a key over the data and every setting: a fine-tune takes ~15 min a protocol on
ML-100K, so a run that asks for the same one again must find it; a changed event log,
base model or setting must not. The key (and so every folder already on disk) depends on
:data:`~leanrec.encoders.finetune.folder.FINETUNE_VERSION`, the data fingerprint and
:func:`~leanrec.encoders.finetune.train.train_encoder`'s settings and defaults.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

from leanrec.encoders.finetune.folder import FINETUNE_VERSION, RECORD_FILENAME, data_key
from leanrec.encoders.finetune.train import Progress, ValidationFactory, train_encoder

__all__ = ["ensure_trained", "finetune_key", "finetuned_path"]

_SIGNATURE = inspect.signature(train_encoder)
_KEY_EXCLUDED = ("dataset", "out_dir", "resume", "progress", "threads")


def _bound_kwargs(kwargs: dict) -> dict:
    """``kwargs`` with train_encoder's defaults filled in (so omitted == passed default)."""
    sig = _SIGNATURE
    allowed = {name for name, p in sig.parameters.items()
               if p.default is not inspect.Parameter.empty and name not in ("resume", "progress")}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"unexpected argument(s) for a cached fine-tune: {', '.join(unknown)}")
    return {name: kwargs.get(name, p.default) for name, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty}


def finetune_key(dataset, **kwargs) -> str:
    """sha256 (hex) of the event log (user, item, timestamp), item texts, base weights and
    settings (``seed`` included; ``threads`` and ``progress`` not: they do not change what
    is learnt, beyond float noise across thread counts)."""
    from leanrec.encoders.resolve import resolve_model, weights_fingerprint

    bound = _bound_kwargs(kwargs)
    settings = {k: v for k, v in bound.items() if k not in _KEY_EXCLUDED}
    resolved = resolve_model(settings["model"])
    settings["model"] = f"{resolved.name}@{weights_fingerprint(resolved.path)}"
    h = hashlib.sha256()
    h.update(f"leanrec-finetune-v{FINETUNE_VERSION}\n".encode())
    h.update(data_key(dataset).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


def finetuned_path(dataset, **kwargs) -> Path:
    """Where :func:`ensure_trained` keeps the fine-tune of ``dataset`` with these settings."""
    from leanrec.paths import cache_dir

    return cache_dir() / "encoders" / f"finetuned-{finetune_key(dataset, **kwargs)[:16]}"


def ensure_trained(dataset, *, validation: ValidationFactory, progress: Progress | None = None, **kwargs) -> Path:
    """The cached fine-tuned encoder folder for ``dataset`` and these settings; trained now if missing.

    ``kwargs`` are :func:`~leanrec.encoders.finetune.train.train_encoder`'s (not ``out_dir``
    or ``resume``), ``validation`` too (it is not part of the key); the folder is
    ``<cache dir>/encoders/finetuned-<key16>`` (see :func:`finetune_key`). A run
    interrupted earlier is resumed from its checkpoint. Use the folder path as an encoder name.
    """
    path = finetuned_path(dataset, **kwargs)
    if (path / RECORD_FILENAME).is_file() and (path / "config.json").is_file():
        return path
    return train_encoder(dataset, path, validation=validation, resume=True, progress=progress, **kwargs)
