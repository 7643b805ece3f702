"""Model folders: what a fitted recommender leaves on disk for the service to load.

A model folder holds ``leanrec_model.json`` (kind, hyper-parameters, the content part's
encoder, the training set it saw) and the arrays the service needs to score *live*
histories with the same formulas the library evaluated:

* ``item_ids.json`` — the training catalogue, in position order;
* ``popularity.npy`` — training events per item (MostPopular; the hybrid's "has events" mask);
* ``ease_B.npy`` — EASE's item-item matrix (EASE and the hybrid's collaborative part).

Item vectors are *not* saved: the service keeps them per encoder in its store, so a model
whose encoder the store already used costs no re-encoding, and new items get vectors the
moment they arrive. Only models built from named encoders can be saved, because the
service must rebuild the same encoder from the name.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .base import Recommender
from .content import ContentRecommender
from .ease import EASE
from .hybrid import Hybrid
from .popular import MostPopular

MODEL_FILE = "leanrec_model.json"
FORMAT_VERSION = 1
KINDS = ("popular", "ease", "content", "hybrid")


@dataclass
class ModelFolder:
    """A loaded model folder: enough to score any history, no training data needed."""

    kind: str
    item_ids: list
    popularity: np.ndarray
    ease_B: np.ndarray | None = None
    encoder: dict | None = None        # {"name", "backend", "precision"} of the content part
    half_life: float | None = None
    weight: float | None = None        # hybrid: share of the collaborative part
    temperature: float = 1.0
    path: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or Path(self.path).name or self.kind)


def _encoder_spec(content: ContentRecommender) -> dict:
    enc = content.encoder
    if not isinstance(enc, str):
        raise ValueError("only content models built from an encoder name can be saved "
                         f"(got {type(enc).__name__}); pass encoder='minilm' or a saved encoder folder")
    if enc.strip().lower() == "tfidf":
        raise ValueError("a TF-IDF content model cannot be served: its vocabulary is fitted on a fixed corpus, "
                         "so new items would change every vector; use a pretrained encoder (e.g. 'minilm')")
    return {"name": enc, "backend": "torch", "precision": "fp32"}


def save_model(model: Recommender, folder: str | os.PathLike, *, name: str | None = None,
               extra: dict | None = None) -> Path:
    """Write a fitted model into ``folder``; returns the folder. Raises for unfitted or
    unsupported models (a clear ``ValueError``) before anything is written."""
    model._check_fitted()
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": FORMAT_VERSION, "params": {}}
    if isinstance(model, Hybrid):
        kind = "hybrid"
        meta["encoder"] = _encoder_spec(model.content_)
        meta["half_life"] = model.content_.half_life
        meta["weight"] = float(model.weight)
        meta["params"] = {"half_life": model.content_.half_life, "weight": model.weight, "lam": model.cf_.lam}
        arrays["ease_B"] = model.cf_.B_
    elif isinstance(model, EASE):
        kind = "ease"
        meta["params"] = {"lam": model.lam}
        arrays["ease_B"] = model.B_
    elif isinstance(model, ContentRecommender):
        kind = "content"
        meta["encoder"] = _encoder_spec(model)
        meta["half_life"] = model.half_life
        meta["params"] = {"half_life": model.half_life}
    elif isinstance(model, MostPopular):
        kind = "popular"
    else:
        raise ValueError(f"cannot save a {type(model).__name__}; supported: {', '.join(KINDS)}")
    ids = [i.item() if hasattr(i, "item") else i for i in model.items_.ids]
    meta.update(kind=kind, temperature=float(model.temperature_), name=name or kind,
                n_items=len(ids), n_users=len(model.history_.user_ids),
                n_events=int(model.history_.item_counts.sum()), created_at=time.time(), **(extra or {}))
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "item_ids.json").write_text(json.dumps(ids))
    np.save(out / "popularity.npy", model.history_.item_counts.astype(np.float64))
    for key, arr in arrays.items():
        np.save(out / f"{key}.npy", np.asarray(arr, np.float32))
    (out / MODEL_FILE).write_text(json.dumps(meta, indent=2, default=str))  # last: marks the folder complete
    return out


def load_model_folder(folder: str | os.PathLike) -> ModelFolder:
    """Read a model folder written by :func:`save_model`, checking it is complete and consistent."""
    path = Path(folder)
    cfg_path = path / MODEL_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path} is not a leanrec model folder: {MODEL_FILE} is missing")
    try:
        meta = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_path}: not valid JSON ({exc})") from None
    kind = meta.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{cfg_path}: field 'kind' must be one of {KINDS}, got {kind!r}")
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: format {meta.get('format')!r} is not supported (expected {FORMAT_VERSION})")
    ids = json.loads((path / "item_ids.json").read_text())
    popularity = np.load(path / "popularity.npy")
    if len(popularity) != len(ids):
        raise ValueError(f"{path}: popularity.npy has {len(popularity)} rows, item_ids.json {len(ids)}")
    B = None
    if kind in ("ease", "hybrid"):
        B = np.load(path / "ease_B.npy", mmap_mode="r")
        if B.shape != (len(ids), len(ids)):
            raise ValueError(f"{path}: ease_B.npy has shape {B.shape}, expected {(len(ids), len(ids))}")
        B = np.ascontiguousarray(B, np.float32)
    if kind in ("content", "hybrid") and not isinstance(meta.get("encoder"), dict):
        raise ValueError(f"{cfg_path}: a {kind} model needs an 'encoder' object")
    return ModelFolder(kind=kind, item_ids=ids, popularity=popularity, ease_B=B, encoder=meta.get("encoder"),
                       half_life=meta.get("half_life"), weight=meta.get("weight"),
                       temperature=float(meta.get("temperature", 1.0)), path=str(path.resolve()), meta=meta)
