"""The model registry: which scorer class serves each saved kind, and how a folder is read.

A servable model is one estimator (``fit``) plus its :class:`~leanrec.models.live.LiveScorer`
(``score``/``decompose`` on live histories, ``save``/``load`` of its folder). Adding a
model is one new module and one :func:`register` line: the service, the batch jobs, the
explanations and the experiments find its scorer here by the kind its folder records.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .content import ContentScorer
from .ease import EASEScorer
from .hybrid import HybridScorer
from .learned_hybrid import LearnedHybridScorer
from .live import FORMAT_VERSION, MODEL_FILE, LiveScorer, read_array
from .popular import PopularScorer
from .seqscorer import SequentialScorer

__all__ = ["SCORERS", "register", "kinds", "load_scorer", "save_model"]

SCORERS: dict[str, type[LiveScorer]] = {}


def register(cls: type[LiveScorer]) -> type[LiveScorer]:
    """Make a scorer class servable under its ``kind`` (usable as a class decorator)."""
    if not cls.kind:
        raise ValueError(f"{cls.__name__} has no kind")
    SCORERS[cls.kind] = cls
    return cls


for _cls in (PopularScorer, EASEScorer, ContentScorer, HybridScorer, SequentialScorer, LearnedHybridScorer):
    register(_cls)


def kinds(*, component: bool = False) -> tuple[str, ...]:
    """The registered kinds (``component``: those a learned hybrid may fuse)."""
    return tuple(k for k, c in SCORERS.items() if not component or c.fusable)


def save_model(model, folder: str | os.PathLike, *, name: str | None = None, extra: dict | None = None) -> Path:
    """Write a fitted model's scorer into ``folder``; returns the folder. Raises for unfitted
    or unsupported models (a clear ``ValueError``) before anything is written."""
    model._check_fitted()
    try:
        scorer = model.live_scorer()
    except NotImplementedError:
        raise ValueError(f"cannot save a {type(model).__name__}; supported: {', '.join(kinds())}") from None
    if scorer.kind not in SCORERS:
        raise ValueError(f"cannot save a {type(model).__name__}: its kind {scorer.kind!r} is not registered")
    scorer._config()  # refuses what cannot be served (an unnamed or TF-IDF encoder) before writing
    meta = {"name": name or scorer.kind, "created_at": time.time(), "n_users": len(model.history_.user_ids),
            "n_events": int(model.history_.item_counts.sum()), **(extra or {})}
    return scorer.save(folder, meta=meta)


def load_scorer(folder: str | os.PathLike, *, component: bool = False) -> LiveScorer:
    """Read a model folder (written by :func:`save_model`), checking it is complete and
    consistent; returns its scorer, with ``path`` set to the folder."""
    path = Path(folder)
    cfg_path = path / MODEL_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path} is not a leanrec model folder: {MODEL_FILE} is missing")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_path}: not valid JSON ({exc})") from None
    allowed = kinds(component=component)
    kind = config.get("kind") if isinstance(config, dict) else None
    if kind not in allowed:
        raise ValueError(f"{cfg_path}: field 'kind' must be one of {allowed}, got {kind!r}")
    if config.get("format") != FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: format {config.get('format')!r} is not supported (expected {FORMAT_VERSION})")
    if not (path / "item_ids.json").is_file():
        raise FileNotFoundError(f"{path}: item_ids.json is missing")
    try:
        ids = json.loads((path / "item_ids.json").read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path / 'item_ids.json'}: not valid JSON ({exc})") from None
    popularity = read_array(path, "popularity.npy")
    if len(popularity) != len(ids):
        raise ValueError(f"{path}: popularity.npy has {len(popularity)} rows, item_ids.json {len(ids)}")
    cls = SCORERS[kind]
    if cls.needs_encoder(config) and not isinstance(config.get("encoder"), dict):
        raise ValueError(f"{cfg_path}: a {kind} model needs an 'encoder' object")
    scorer = cls._from_folder(path, config, [str(i) for i in ids], np.asarray(popularity, np.float64),
                              load=lambda sub: load_scorer(sub, component=True))
    scorer.path = str(path.resolve())
    return scorer
