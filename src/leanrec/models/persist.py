"""Model folders: what a fitted recommender leaves on disk for the service to load.

A model folder holds ``leanrec_model.json`` (kind, hyper-parameters, the text encoder,
the training set it saw) and the arrays the service needs to score *live* histories with
the same formulas the library evaluated:

* ``item_ids.json`` — the training catalogue, in position order;
* ``popularity.npy`` — training events per item (MostPopular; the "has events" mask of
  the hybrids and of the sequential models' ID embeddings);
* ``ease_B.npy`` — EASE's item-item matrix (EASE and the hybrid's collaborative part);
* ``seqnet.pt`` — a :class:`~leanrec.models.sequential.SequentialRecommender`'s network
  weights (a ``torch.save``'d state dict of plain tensors, read with
  ``torch.load(weights_only=True)``), without its ``text``/``has_events`` buffers: the
  service rebuilds the item table around *its* text vectors; the network's shape is in
  ``leanrec_model.json`` under ``seqnet``;
* ``components/c<k>/`` — a learned hybrid's components, each a complete model folder of
  kind popular, ease, content or sequential (the fusion weights are in the parent's JSON).

Item vectors are *not* saved: the service keeps them per encoder in its store, so a model
whose encoder the store already used costs no re-encoding, and new items get vectors the
moment they arrive. Only models built from named encoders can be saved, because the
service must rebuild the same encoder from the name; a learned hybrid's text components
must all use the same one (the service holds one encoder).
"""

from __future__ import annotations

import json
import os
import pickle
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
SEQNET_FILE = "seqnet.pt"
FORMAT_VERSION = 1
KINDS = ("popular", "ease", "content", "hybrid", "sequential", "learned_hybrid")
COMPONENT_KINDS = ("popular", "ease", "content", "sequential")  # what a learned hybrid may fuse
#: SequentialRecommender parameters that fix the network's shape and formulas.
SEQNET_CONFIG = ("pooling", "dim", "max_len", "layers", "heads", "dropout", "item_ids", "half_life")
_SEQNET_BUFFERS = ("text", "has_events")  # rebuilt by the service from its own vectors


@dataclass
class ModelFolder:
    """A loaded model folder: enough to score any history, no training data needed."""

    kind: str
    item_ids: list
    popularity: np.ndarray
    ease_B: np.ndarray | None = None
    encoder: dict | None = None        # {"name", "backend", "precision"} of the text part
    half_life: float | None = None     # content part's profile decay (events)
    weight: float | None = None        # hybrid: share of the collaborative part
    temperature: float = 1.0
    path: str = ""
    meta: dict = field(default_factory=dict)
    # sequential: {"config": SEQNET_CONFIG + text_dim/n_items, "state": state dict without the text buffers}
    seqnet: dict | None = None
    # learned_hybrid: [(name, ModelFolder)], and the fusion weights by component name
    components: list = field(default_factory=list)
    weights: dict | None = None
    new_item_weights: dict | None = None

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or Path(self.path).name or self.kind)


def _encoder_spec(model) -> dict:
    """The service-rebuildable spec of a text model's encoder; refuses objects and TF-IDF."""
    enc = model.encoder
    what = type(model).__name__
    if not isinstance(enc, str):  # a ValueError like every other refusal (the CLI reports those)
        raise ValueError(  # noqa: TRY004
            f"only models whose text encoder is given by name can be saved ({what} has a "
            f"{type(enc).__name__}); pass encoder='minilm' or a saved encoder folder")
    if enc.strip().lower() == "tfidf":
        raise ValueError(f"a TF-IDF {what} cannot be served: its vocabulary is fitted on a fixed corpus, "
                         "so new items would change every vector; use a pretrained encoder (e.g. 'minilm')")
    return {"name": enc, "backend": "torch", "precision": "fp32"}


def _encoder_key(spec: dict) -> tuple:
    """What makes two encoder specs the same encoder (MiniLM's aliases are one model)."""
    from ..encoders.resolve import MINILM_ALIASES

    name = str(spec.get("name", "")).strip()
    if name.lower() in {a.lower() for a in MINILM_ALIASES}:
        name = "minilm"
    return name, spec.get("backend"), spec.get("precision")


def _json_params(model) -> dict:
    return {k: v for k, v in model.get_params(deep=False).items()
            if v is None or isinstance(v, (bool, int, float, str))}


@dataclass
class _Plan:
    """Everything ``save_model`` will write, worked out (and refused) before writing."""

    kind: str
    meta: dict
    arrays: dict
    torch_state: dict | None = None
    children: list = field(default_factory=list)  # [(sub-folder, _Plan)]
    ids: list = field(default_factory=list)
    popularity: np.ndarray | None = None


def _plan(model: Recommender, *, inside: str | None = None) -> _Plan:
    from .learned_hybrid import LearnedHybrid
    from .sequential import SequentialRecommender

    model._check_fitted()
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": FORMAT_VERSION, "params": {}}
    torch_state, children = None, []
    allowed = COMPONENT_KINDS if inside else KINDS
    if isinstance(model, LearnedHybrid) and not inside:
        kind = "learned_hybrid"
        names = [n for n, _ in model.components_]
        spec = None
        for k, (name, comp) in enumerate(model.components_):
            sub = _plan(comp, inside=name)
            if sub.ids != [_plain(i) for i in model.items_.ids]:
                raise ValueError(f"learned hybrid component {name!r} was fitted on another catalogue")
            comp_spec = sub.meta.get("encoder")
            if comp_spec is not None:
                if spec is not None and _encoder_key(comp_spec) != _encoder_key(spec):
                    raise ValueError(f"the service holds one encoder, but the learned hybrid's text components use "
                                     f"{spec['name']!r} and {comp_spec['name']!r}; fit them on one encoder")
                spec = comp_spec
            children.append((f"c{k}", sub))
        contents = [sub for _, sub in children if sub.kind == "content"]
        if len(contents) > 1:
            raise ValueError("a learned hybrid with more than one content component cannot be served "
                             "(the service keeps one content profile per user)")
        meta["encoder"] = spec
        meta["half_life"] = contents[0].meta["half_life"] if contents else None
        meta["components"] = [{"name": n, "folder": f"components/{f}", "kind": sub.kind}
                              for n, (f, sub) in zip(names, children)]
        meta["weights"] = {n: float(model.weights_[n]) for n in names}
        meta["new_item_weights"] = {n: float(model.new_item_weights_[n]) for n in names}
        meta["params"] = _json_params(model)
    elif isinstance(model, SequentialRecommender):
        kind = "sequential"
        meta["encoder"] = _encoder_spec(model)
        net = model.net_
        config = {k: _plain(getattr(model, k)) for k in SEQNET_CONFIG}
        config.update(text_dim=int(net.proj.in_features), n_items=int(net.n_items))
        meta["seqnet"] = config
        meta["params"] = _json_params(model)
        meta["training"] = {k: v for k, v in getattr(model, "training_", {}).items() if k != "history"}
        torch_state = {k: v.detach().cpu().clone().contiguous() for k, v in net.state_dict().items()
                       if k not in _SEQNET_BUFFERS}
    elif isinstance(model, Hybrid):
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
        kind = None
    if kind not in allowed:
        where = f"learned hybrid component {inside!r}: " if inside else ""
        raise ValueError(f"{where}cannot save a {type(model).__name__}; supported: {', '.join(allowed)}")
    ids = [_plain(i) for i in model.items_.ids]
    meta.update(kind=kind, temperature=float(model.temperature_), n_items=len(ids),
                n_users=len(model.history_.user_ids), n_events=int(model.history_.item_counts.sum()))
    return _Plan(kind, meta, arrays, torch_state, children, ids, model.history_.item_counts.astype(np.float64))


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def _write(plan: _Plan, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "item_ids.json").write_text(json.dumps(plan.ids))
    np.save(out / "popularity.npy", plan.popularity)
    for key, arr in plan.arrays.items():
        np.save(out / f"{key}.npy", np.asarray(arr, np.float32))
    if plan.torch_state is not None:
        import torch

        torch.save(plan.torch_state, out / SEQNET_FILE)
    for sub, child in plan.children:
        _write(child, out / "components" / sub)
    (out / MODEL_FILE).write_text(json.dumps(plan.meta, indent=2, default=str))  # last: marks the folder complete


def save_model(model: Recommender, folder: str | os.PathLike, *, name: str | None = None,
               extra: dict | None = None) -> Path:
    """Write a fitted model into ``folder``; returns the folder. Raises for unfitted or
    unsupported models (a clear ``ValueError``) before anything is written."""
    plan = _plan(model)
    plan.meta.update(name=name or plan.kind, created_at=time.time(), **(extra or {}))
    out = Path(folder)
    _write(plan, out)
    return out


def _load_seqnet(path: Path, config: dict, popularity: np.ndarray) -> dict:
    """Read ``seqnet.pt`` and check it fits the network ``config`` describes (by loading it
    into a skeleton of that network); a missing or unreadable file names itself."""
    import torch

    from .seqnet import SeqNet

    file = path / SEQNET_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{path}: {SEQNET_FILE} (the sequential model's weights) is missing")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError) as exc:  # truncated, not torch
        raise ValueError(f"{file}: not a readable torch weights file ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{file}: expected a state dict of tensors")
    need = ("text_dim", "n_items", *SEQNET_CONFIG)
    missing = [k for k in need if k not in config]
    if missing:
        raise ValueError(f"{path / MODEL_FILE}: 'seqnet' lacks {missing}")
    if config["n_items"] != len(popularity):
        raise ValueError(f"{path}: seqnet is for {config['n_items']} items, item_ids.json has {len(popularity)}")
    n, text_dim = int(config["n_items"]), int(config["text_dim"])
    with torch.random.fork_rng(devices=[]):  # the skeleton's random init must not move the caller's seed
        skeleton = SeqNet(torch.zeros(1, text_dim).expand(n, text_dim), torch.from_numpy(popularity > 0),
                          **{k: config[k] for k in SEQNET_CONFIG})
    try:
        missing, unexpected = skeleton.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ValueError(f"{file}: does not fit the network in {MODEL_FILE} ({exc})") from None
    missing = [k for k in missing if k not in _SEQNET_BUFFERS]
    if missing or unexpected:
        raise ValueError(f"{file}: does not fit the network in {MODEL_FILE} "
                         f"(missing {missing}, unexpected {list(unexpected)})")
    return {"config": dict(config), "state": state}


def _read_array(path: Path, name: str, **kw) -> np.ndarray:
    file = path / name
    if not file.is_file():
        raise FileNotFoundError(f"{path}: {name} is missing")
    try:
        return np.load(file, **kw)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{file}: not a readable .npy file ({exc})") from None


def load_model_folder(folder: str | os.PathLike, *, _component: bool = False) -> ModelFolder:
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
    kinds = COMPONENT_KINDS if _component else KINDS
    if kind not in kinds:
        raise ValueError(f"{cfg_path}: field 'kind' must be one of {kinds}, got {kind!r}")
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{cfg_path}: format {meta.get('format')!r} is not supported (expected {FORMAT_VERSION})")
    if not (path / "item_ids.json").is_file():
        raise FileNotFoundError(f"{path}: item_ids.json is missing")
    try:
        ids = json.loads((path / "item_ids.json").read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path / 'item_ids.json'}: not valid JSON ({exc})") from None
    popularity = _read_array(path, "popularity.npy")
    if len(popularity) != len(ids):
        raise ValueError(f"{path}: popularity.npy has {len(popularity)} rows, item_ids.json {len(ids)}")
    B = None
    if kind in ("ease", "hybrid"):
        B = _read_array(path, "ease_B.npy", mmap_mode="r")
        if B.shape != (len(ids), len(ids)):
            raise ValueError(f"{path}: ease_B.npy has shape {B.shape}, expected {(len(ids), len(ids))}")
        B = np.ascontiguousarray(B, np.float32)
    if kind in ("content", "hybrid", "sequential", "learned_hybrid") and not isinstance(meta.get("encoder"), dict):
        raise ValueError(f"{cfg_path}: a {kind} model needs an 'encoder' object")
    seqnet = None
    if kind == "sequential":
        if not isinstance(meta.get("seqnet"), dict):
            raise ValueError(f"{cfg_path}: a sequential model needs a 'seqnet' object")
        seqnet = _load_seqnet(path, meta["seqnet"], popularity)
    components, weights, new_weights = [], None, None
    if kind == "learned_hybrid":
        comps = meta.get("components")
        weights, new_weights = meta.get("weights"), meta.get("new_item_weights")
        if not isinstance(comps, list) or not comps or not isinstance(weights, dict) \
                or not isinstance(new_weights, dict):
            raise ValueError(f"{cfg_path}: a learned_hybrid needs 'components', 'weights' and 'new_item_weights'")
        for c in comps:
            name = c.get("name") if isinstance(c, dict) else None
            if name not in weights or name not in new_weights:
                raise ValueError(f"{cfg_path}: component {name!r} has no weight")
            sub = load_model_folder(path / str(c.get("folder")), _component=True)
            if sub.item_ids != ids:
                raise ValueError(f"{sub.path}: component {name!r} has another catalogue than {path}")
            if sub.encoder is not None and _encoder_key(sub.encoder) != _encoder_key(meta["encoder"]):
                raise ValueError(f"{sub.path}: component {name!r} uses encoder {sub.encoder}, "
                                 f"the learned hybrid {meta['encoder']}")
            components.append((name, sub))
    return ModelFolder(kind=kind, item_ids=ids, popularity=popularity, ease_B=B, encoder=meta.get("encoder"),
                       half_life=meta.get("half_life"), weight=meta.get("weight"),
                       temperature=float(meta.get("temperature", 1.0)), path=str(path.resolve()), meta=meta,
                       seqnet=seqnet, components=components, weights=weights, new_item_weights=new_weights)
