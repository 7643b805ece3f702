"""Live scoring: a fitted model applied to any history over any catalogue.

Every model has one scorer (:class:`LiveScorer`), defined in the model's own module, and
every caller scores through it: the library's ``Recommender.score``/``decompose`` (the
training catalogue, the training histories), the service (its live catalogue, a user's
live history, new items the moment their text is encoded), the explanations and the online
experiments. So a model's formula exists once, and what the service serves is what the
library evaluated.

A scorer sees:

* a **catalogue** (:class:`LiveCatalogue`): item ids by position, their vectors from the
  served encoder, which positions are alive (the service tombstones deletions) and the
  live event counts. :class:`ItemCatalogue` is the library's fixed one;
* **users** (:class:`LiveUser`): item ids, never positions, because a user's history may
  name items the catalogue has deleted since (a collaborative model still counts them, a
  sequence model skips them, as the library would on the data it was given).

A scorer knows its own training catalogue (``item_ids``, in the model's row order) and
lays its model-space arrays over the catalogue's positions by item id; an item it never
saw scores from its text where the model has a text part, and 0 otherwise.

Saving: a scorer writes its folder (``leanrec_model.json`` with its kind and config, plus
its arrays) and its class reads it back (:mod:`leanrec.models.registry` finds the class by
the kind), sentence-transformers style: each module saves and loads its own parts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence

import numpy as np

MODEL_FILE = "leanrec_model.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Decomposition:
    """scores[i] = contributions[:, i].sum() + base[i] + unexplained[i], for the requested items.

    ``history``: positions of the user's distinct history items (ascending), one row of
    ``contributions`` each; ``base``: the part that depends on no history item (popularity,
    a bias); ``unexplained``: the part of the score that has no exact split (a transformer's
    output) — all zeros when the split is exact; ``note`` says why a part is unexplained.
    """

    history: np.ndarray        # int64[h]
    contributions: np.ndarray  # float64[h, n]
    base: np.ndarray           # float64[n]
    unexplained: np.ndarray    # float64[n]
    method: str
    note: str = ""

    @property
    def exact(self) -> bool:
        return not np.any(self.unexplained)

    @property
    def total(self) -> np.ndarray:
        return self.contributions.sum(axis=0) + self.base + self.unexplained


class LiveCatalogue(Protocol):
    """What a scorer reads of a catalogue (the service's ``Catalogue`` is one)."""

    ids: Sequence            # item id (str) of every position, tombstones included
    pos: dict                # item id -> position, live items only
    counts: np.ndarray       # events per position (a buffer: the first ``n`` count)
    version: int             # changes with every change of the catalogue

    @property
    def n(self) -> int: ...
    @property
    def V(self) -> np.ndarray: ...       # float32[n, d]: the served encoder's item vectors
    @property
    def alive(self) -> np.ndarray: ...   # bool[n]


class ItemCatalogue:
    """A fixed catalogue: every item alive, in the order of a data set's items (the
    library's; ``V`` may be None for models that read no item vectors)."""

    def __init__(self, ids, vectors: np.ndarray | None = None, counts: np.ndarray | None = None):
        self.ids = [str(i) for i in ids]
        self.id_array = np.asarray(self.ids, dtype=object)  # ids by position, for fancy indexing
        self.pos = {i: k for k, i in enumerate(self.ids)}
        self._V = vectors
        self._summable = None
        self.counts = np.zeros(len(self.ids)) if counts is None else np.asarray(counts, np.float64)
        self.version = 0
        self._alive = np.ones(len(self.ids), bool)

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def V(self) -> np.ndarray:
        if self._V is None:
            raise ValueError("this catalogue has no item vectors")
        return self._V

    @property
    def alive(self) -> np.ndarray:
        return self._alive

    @property
    def summable_V(self):
        """``V`` as :func:`leanrec.data.history.user_vectors` sums it fastest (sparse for
        TF-IDF), converted on first use: this catalogue never changes, and the library
        scores it for thousands of users per grid point."""
        if self._summable is None:
            from ..data.history import summable_vectors

            self._summable = summable_vectors(self.V)
        return self._summable


#: a history the user holds as catalogue positions only (ids looked up on first read)
_BY_POSITION = object()


class LiveUser:
    """What a scorer may read about one user (item ids as the catalogue spells them).

    ``seen``: distinct items, in first-seen order; ``recent``: the newest events in time
    order, repeats kept (at least the scorer's ``window`` of them where it has one);
    ``vector``: the content vector the caller keeps (the service's O(d) profile), None to
    compute it from ``history``; ``history``: every event in time order (the library's
    training sequence; the service's stored history when it explains); ``on``: (a catalogue,
    the history's positions in it) when the caller has them already (the library's users on
    its training catalogue), so scoring there looks no id up. A user made from a sequence
    derives ``seen`` only when a scorer asks: the library builds one per user per scoring
    call, and most scorers never read it.
    """

    __slots__ = ("_seen", "_recent", "vector", "_history", "on")

    def __init__(self, seen=(), recent=(), vector: np.ndarray | None = None, history=None,
                 on: tuple | None = None):
        self._seen, self._recent, self.vector, self._history, self.on = seen, recent, vector, history, on

    @classmethod
    def from_sequence(cls, ids: Sequence, on: tuple | None = None) -> "LiveUser":
        """A user whose whole history (oldest first) is known (``on``: see the class)."""
        return cls(None, ids, None, ids, on)

    @classmethod
    def on_catalogue(cls, cat: "ItemCatalogue", positions: np.ndarray) -> "LiveUser":
        """:meth:`from_sequence` for a history given as positions of ``cat`` (the library's
        training users): the ids are looked up only if a scorer reads them (most score
        from the positions alone)."""
        return cls(None, _BY_POSITION, None, _BY_POSITION, (cat, positions))

    def _ids(self):
        ids = self.on[0].id_array[self.on[1]]
        self._recent = self._history = ids
        return ids

    @property
    def history(self):
        return self._ids() if self._history is _BY_POSITION else self._history

    @property
    def recent(self):
        return self._ids() if self._recent is _BY_POSITION else self._recent

    @property
    def seen(self) -> tuple:
        if self._seen is None:
            self._seen = tuple(dict.fromkeys(self.history))
        return self._seen

    @property
    def events(self):
        """The full history where known, else the recent window."""
        return self.history if self.history is not None else self.recent

    def events_in(self, cat: "LiveCatalogue") -> np.ndarray:
        """Positions of the live items of :attr:`events` in ``cat``, oldest first."""
        if self.on is not None and self.on[0] is cat:
            return self.on[1]
        return live_positions(cat, self.events)

    def window_in(self, cat: "LiveCatalogue") -> np.ndarray:
        """Positions of the live items of the recent window (the events where it is all of
        them) in ``cat``, oldest first: what a sequence model reads."""
        if self.on is not None and self.on[0] is cat and self._recent is self._history:
            return self.on[1]
        return live_positions(cat, self.recent if len(self.recent) else self.events)

    def __repr__(self) -> str:
        return f"LiveUser(events={len(self.events)}, vector={self.vector is not None})"


def live_positions(cat: LiveCatalogue, ids) -> np.ndarray:
    """Positions of the live items among ``ids`` (order and repeats kept)."""
    pos = cat.pos
    return np.fromiter((pos[i] for i in ids if i in pos), np.int64)


class LiveScorer:
    """Base of every model's scorer; see the module docstring.

    Subclasses set ``kind`` (the registry name), implement :meth:`score` and, where the
    score splits exactly into history items, :meth:`decompose`; they save and load their
    own config and arrays through :meth:`_config`/:meth:`_save_arrays` and
    :meth:`_from_folder`. Attributes every scorer has: ``item_ids`` (its training
    catalogue, as str), ``popularity`` (training events per item: the "has events" mask),
    ``temperature`` (softmax T), ``encoder`` (the text encoder spec or None), ``half_life``
    (the content profile's decay where the model keeps one, else None) and
    ``uses_profile`` (whether it reads ``LiveUser.vector``), ``window`` (recent events it
    reads; 0 if none) and ``meta`` (what the folder recorded: name, training sizes).
    """

    kind: ClassVar[str] = ""
    explain_method: str = "none"
    uses_profile: ClassVar[bool] = False
    #: the score is ⟨query(user), V_i⟩: rankable by a vector index instead of full scores
    by_query: ClassVar[bool] = False
    #: an item the model never trained on gets a real score (from its text)
    scores_new_items: ClassVar[bool] = False
    #: a learned hybrid may fuse it (a fused model itself is never a component)
    fusable: ClassVar[bool] = True

    def __init__(self, item_ids, popularity: np.ndarray, *, temperature: float = 1.0, encoder: dict | None = None,
                 half_life: float | None = None, meta: dict | None = None):
        self.item_ids = [str(i) for i in item_ids]
        self.popularity = np.asarray(popularity, np.float64)
        self.temperature = float(temperature)
        self.encoder = encoder
        self.half_life = half_life
        self.meta = dict(meta or {})
        self.item_index = {i: k for k, i in enumerate(self.item_ids)}
        self._layout: tuple = (None, -1, -1, None, False)

    window: int = 0
    path: str = ""  # the folder it was loaded from

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.kind)

    # -- scoring ------------------------------------------------------------------------
    def score(self, users: Sequence[LiveUser], cat: LiveCatalogue) -> np.ndarray:
        """Scores of every catalogue position for each user: float[len(users), cat.n]."""
        raise NotImplementedError

    def query(self, user: LiveUser, cat: LiveCatalogue) -> np.ndarray:
        """The query vector of a ``by_query`` scorer (its score is ⟨query, V_i⟩)."""
        raise NotImplementedError(f"{type(self).__name__} does not score by a query vector")

    def decompose(self, user: LiveUser, cat: LiveCatalogue, positions: np.ndarray) -> Decomposition:
        """The split of the user's scores of ``positions`` (history as item ids). Default: no
        exact split — the whole score is unexplained, and says so."""
        scores = self.score([user], cat)[0, positions].astype(np.float64)
        n = len(positions)
        return Decomposition(np.zeros(0, object), np.zeros((0, n)), np.zeros(n), scores, self.explain_method,
                             f"{type(self).__name__.removesuffix('Scorer')} has no exact split of its score "
                             "into history items")

    def decompose_mean(self, user: LiveUser, cat: LiveCatalogue, columns: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """(history ids, mean contribution of each over ``columns``, mean base, mean
        unexplained): what a z-score split centres by. Generic: decompose in chunks."""
        chunk, sums, base, unexplained, history = 4096, None, 0.0, 0.0, np.zeros(0, object)
        for lo in range(0, len(columns), chunk):
            d = self.decompose(user, cat, columns[lo:lo + chunk])
            part = d.contributions.sum(axis=1)
            sums, history = (part, d.history) if sums is None else (sums + part, history)
            base += float(d.base.sum())
            unexplained += float(d.unexplained.sum())
        n = max(len(columns), 1)
        return history, (np.zeros(0) if sums is None else sums / n), base / n, unexplained / n

    # -- the training catalogue laid over a live one ------------------------------------
    def model_positions(self, cat: LiveCatalogue) -> np.ndarray:
        """Catalogue position of each model item (-1 if not live), cached per catalogue version."""
        key_cat, key_ver, key_n, arr, _ = self._layout
        if key_cat is cat and key_ver == cat.version and key_n == cat.n:
            return arr
        pos = cat.pos
        arr = np.fromiter((pos.get(i, -1) for i in self.item_ids), np.int64, count=len(self.item_ids))
        same = cat.n == len(arr) and bool(np.all(arr == np.arange(cat.n))) and bool(np.all(cat.alive))
        self._layout = (cat, cat.version, cat.n, arr, same)
        return arr

    def identity(self, cat: LiveCatalogue) -> bool:
        """Whether the catalogue's positions are the model's rows, all alive (the library's)."""
        self.model_positions(cat)
        return self._layout[4]

    def to_catalogue(self, cat: LiveCatalogue, values: np.ndarray) -> np.ndarray:
        """Model-space values (last axis = model items) laid over catalogue positions; 0 where
        a position is no model item."""
        if self.identity(cat):
            return values
        mpos = self.model_positions(cat)
        valid = mpos >= 0
        out = np.zeros(values.shape[:-1] + (cat.n,), values.dtype)
        out[..., mpos[valid]] = values[..., valid]
        return out

    def model_columns(self, cat: LiveCatalogue, positions) -> np.ndarray:
        """The model item (row of its arrays) at each catalogue position; -1 where a position
        is no model item: reads only the columns asked for, where :meth:`to_catalogue`
        lays out every one."""
        positions = np.asarray(positions, np.int64)
        if self.identity(cat):
            return positions
        mpos = self.model_positions(cat)
        inverse = np.full(cat.n, -1, np.int64)
        inverse[mpos[mpos >= 0]] = np.flatnonzero(mpos >= 0)
        return inverse[positions]

    def has_events(self, cat: LiveCatalogue) -> np.ndarray:
        """bool[cat.n]: live positions of items that had training events."""
        mpos = self.model_positions(cat)
        out = np.zeros(cat.n, bool)
        out[mpos[(mpos >= 0) & (self.popularity > 0)]] = True
        return out & cat.alive

    def known_rows(self, ids) -> tuple[list, np.ndarray]:
        """(the ids the model knows, their model rows), in the order given."""
        index = self.item_index
        known = [i for i in ids if i in index]
        return known, np.fromiter((index[i] for i in known), np.int64, count=len(known))

    # -- folders ------------------------------------------------------------------------
    @classmethod
    def needs_encoder(cls, config: dict) -> bool:
        """Whether a saved folder of this kind must name its text encoder (it reads the
        profile the service keeps, or scores items from their text)."""
        return cls.uses_profile or cls.scores_new_items

    def _config(self) -> dict[str, Any]:
        """The kind's own JSON fields (beyond the common ones)."""
        return {}

    def _save_arrays(self, folder: Path) -> None:
        """Write the kind's own arrays into ``folder``."""

    def save(self, folder: str | Path, *, meta: dict | None = None) -> Path:
        """Write the folder; ``leanrec_model.json`` last, so it marks the folder complete."""
        config = {**self.meta, **(meta or {}), "format": FORMAT_VERSION, "kind": self.kind,
                  "temperature": self.temperature, "n_items": len(self.item_ids), **self._config()}
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        (out / "item_ids.json").write_text(json.dumps(_json_ids(self.item_ids)))
        np.save(out / "popularity.npy", self.popularity.astype(np.float64))
        self._save_arrays(out)
        (out / MODEL_FILE).write_text(json.dumps(config, indent=2, default=str))
        return out

    @classmethod
    def _from_folder(cls, path: Path, config: dict, item_ids: list, popularity: np.ndarray,
                     load=None) -> "LiveScorer":
        """Build the scorer from its folder's config and arrays (common parts read already);
        ``load(folder)`` reads a component folder, for scorers made of others."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r}, items={len(self.item_ids)})"


def encoder_spec(encoder, what: str) -> dict:
    """The spec a service rebuilds a text model's encoder from; refuses objects and TF-IDF."""
    if isinstance(encoder, dict):
        return encoder
    if not isinstance(encoder, str):  # a ValueError like every other refusal (the CLI reports those)
        raise ValueError(  # noqa: TRY004
            f"only models whose text encoder is given by name can be saved ({what} has a "
            f"{type(encoder).__name__}); pass encoder='minilm' or a saved encoder folder")
    if encoder.strip().lower() == "tfidf":
        raise ValueError(f"a TF-IDF {what} cannot be served: its vocabulary is fitted on a fixed corpus, "
                         "so new items would change every vector; use a pretrained encoder (e.g. 'minilm')")
    return {"name": encoder, "backend": "torch", "precision": "fp32"}


def encoder_key(spec: dict) -> tuple:
    """What makes two encoder specs the same encoder (MiniLM's aliases are one model)."""
    from ..encoders.resolve import MINILM_ALIASES

    name = str(spec.get("name", "")).strip()
    if name.lower() in {a.lower() for a in MINILM_ALIASES}:
        name = "minilm"
    return name, spec.get("backend"), spec.get("precision")


def _json_ids(ids: list[str]) -> list:
    """Item ids for ``item_ids.json``: numbers stay numbers where every id is one (a folder
    written before ids were kept as strings reads the same)."""
    try:
        as_int = [int(i) for i in ids]
    except ValueError:
        return list(ids)
    return as_int if [str(i) for i in as_int] == list(ids) else list(ids)


def read_array(path: Path, name: str, **kw) -> np.ndarray:
    """A ``.npy`` file of a model folder, with an error that names it."""
    file = path / name
    if not file.is_file():
        raise FileNotFoundError(f"{path}: {name} is missing")
    try:
        return np.load(file, **kw)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{file}: not a readable .npy file ({exc})") from None


def zscore(scores: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    """Per-row z-scores, mean and spread taken over ``columns`` (all if None); a row with
    no spread keeps its deviations unscaled. How the hybrids put parts on one scale."""
    ref = scores if columns is None else scores[:, columns]
    if ref.shape[1] == 0:
        return np.zeros_like(scores)
    mu = ref.mean(axis=1, keepdims=True)
    sd = ref.std(axis=1, keepdims=True)
    return (scores - mu) / np.where(sd > 0, sd, 1.0)
