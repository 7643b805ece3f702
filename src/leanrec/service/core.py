"""The recommendation service without HTTP: store + encoder + catalogue + profiles + model.

The FastAPI layer (``api.py``) only parses, authorises and serialises; everything a request
does happens here, so the same behaviour is available to a Python caller or a test.

Concurrency: one process owns the in-memory state. ``_write`` serialises writers (database
transaction, then the in-memory change, so memory follows commit order); ``_state`` guards
the in-memory structures and is held by readers only for the search itself and by writers
only for the in-memory change — never across a database commit or an encoder call.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..core.ranking import softmax
from ..models.content import ContentScorer
from ..models.live import LiveScorer, LiveUser, encoder_key
from ..models.registry import load_scorer
from .catalogue import Catalogue, _top
from .config import ServiceConfig
from .experiments import (
    DEFAULT_CLICK_KINDS,
    DEFAULT_WINDOW_S,
    Arm,
    Experiment,
    ab_report,
    check_arms,
    equal_shares,
    interleave_report,
    team_draft,
)
from ..data.history import decay_factor
from .profiles import Profile, profile_id
from .store import Store

log = logging.getLogger("leanrec.service")

COLD_START_MODEL = "cold-start:popular+new"
FILTER_RE = re.compile(r"^\s*([A-Za-z0-9_.-]{1,64})\s*:(.{1,256})$")


def _content_name(encoder) -> str:
    """``content:<encoder>`` without the weights fingerprint, as lists report it."""
    return f"content:{encoder.model_id.split('@')[0]}"


class InputError(ValueError):
    """Request content the service refuses; ``errors`` follow FastAPI's 422 shape."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    """The request is valid but the resource's state refuses it (HTTP 409): an experiment
    id already taken, a stopped experiment asked for a list."""


def parse_filters(values: list[str] | None) -> list[tuple[str, str]]:
    """``["category:Books", "brand:Acme,color:red"]`` → [(field, value), ...] (all must hold)."""
    out = []
    for k, raw in enumerate(values or []):
        for part in raw.split(","):
            if not part.strip():
                continue
            m = FILTER_RE.match(part)
            if m is None:
                raise InputError([{"loc": ["query", "filter", k], "type": "value_error",
                                   "msg": f"filter {part!r} must look like field:value (e.g. genres:Comedy)"}])
            out.append((m.group(1), m.group(2).strip()))
    return out


@dataclass
class Scoring:
    """The served model: its scorer (every formula is the scorer's, :mod:`leanrec.models.live`)
    and how the service keeps users for it."""

    scorer: LiveScorer
    name: str
    half_life: float | None  # the decay of the profiles kept for it (the model's, else the config's)
    temperature: float
    path: str | None = None

    @property
    def kind(self) -> str:
        return self.scorer.kind

    @property
    def seq_keep(self) -> int:
        """History events to keep per cached user (0: the scorer reads no recent window)."""
        return self.scorer.window


def live_user(st: "UserState", history: tuple | None = None) -> LiveUser:
    """What a scorer reads of a user state (``history``: the stored one, for explanations)."""
    return LiveUser(st.seen, st.recent, st.profile.vector if st.profile is not None else None, history)


class UserState(NamedTuple):
    """What a read needs about a user; cached as plain tuples (see ``_remember``), so the
    user cache does not lengthen garbage-collector pauses as it grows."""

    profile: Profile | None
    seen: tuple  # item ids, each once
    recent: tuple = ()  # newest item ids in time order, repeats kept (sequential models only)


class Ranked(NamedTuple):
    """A finished ranking before serialisation: catalogue positions, their scores, and the
    scoring that made them (None for an interleaved list, which mixes two)."""

    cat: Catalogue
    pos: np.ndarray
    scores: np.ndarray
    model: str
    temperature: float
    cold: bool
    scoring: Scoring | None


class RecService:
    def __init__(self, config: ServiceConfig, *, encoder=None, metrics=None):
        self.config = config.check()
        # index = "pgvector": vectors must live in pgvector tables (an error at start-up if the
        # server has no extension); otherwise the store uses them when it finds the extension
        self.store = Store(config.db, vectors="pgvector" if config.index == "pgvector" else "auto",
                           hnsw_m=config.hnsw_m, hnsw_ef_construction=config.hnsw_ef_construction,
                           ann=config.pgvector_ann, ivfflat_lists=config.ivfflat_lists)
        self.metrics = metrics
        self._injected_encoder = encoder
        self._write = threading.RLock()
        self._state = threading.RLock()
        self._users: OrderedDict[str, tuple] = OrderedDict()  # user id -> UserState as plain tuples
        self.encoder = None
        self.encoder_spec: dict | None = None
        self.cat: Catalogue | None = None
        self.pgv = None  # PgVectorIndex of the served encoder when index = "pgvector"
        self.scoring: Scoring | None = None
        self.pid = ""
        self.ready = False
        self.error: str | None = None
        self.api_keys: dict[str, str] = {}
        self._saved_version = (None, -1)
        self._stop = threading.Event()
        self._persister: threading.Thread | None = None
        self._experiments: dict[str, Experiment] = {}
        self._arm_scorings: dict[tuple, Scoring] = {}  # (model path, encoder id) -> Scoring

    # -- life cycle ------------------------------------------------------------------
    def start(self, progress: Callable[[str, int, int], None] | None = None) -> RecService:
        """Migrate the store, sync API keys, load the model and restore the catalogue."""
        try:
            self.store.migrate()
            if self.config.api_key_file:
                from .keys import read_key_file

                self.store.replace_api_keys(read_key_file(self.config.api_key_file))
            self.api_keys = self.store.api_key_scopes()
            self._experiments = {d["id"]: Experiment.from_dict(d) for d in self.store.experiments()}
            path = self.config.model
            if path is None:
                path = self.store.active_model_path()
                if path is not None and not Path(path).is_dir():
                    log.warning("the model %s the store last served is gone; serving the content model", path)
                    path = None
            self.load_model(path, progress=progress)
            self._persister = threading.Thread(target=self._persist_loop, name="leanrec-persist", daemon=True)
            self._persister.start()
            self.ready = True
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            raise
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._persister is not None:
            self._persister.join(timeout=60)
        if self.cat is not None:
            self.persist()
        self.store.close()

    def _persist_loop(self) -> None:
        while not self._stop.wait(self.config.persist_interval_s):
            try:
                self.persist()
            except Exception:  # pragma: no cover - logged, retried next round
                log.exception("persisting the index failed")

    def index_dir(self, encoder_id: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", encoder_id)[:60]
        digest = hashlib.sha256(encoder_id.encode()).hexdigest()[:12]
        return Path(self.config.data_dir).expanduser() / "index" / f"{slug}-{digest}"

    def persist(self) -> bool:
        """Write the index state if it changed since the last write. Holds the writer lock
        (nothing changes meanwhile) but not the readers' lock (searches go on)."""
        with self._write:
            cat, enc_id = self.cat, self.encoder.model_id
            if self._saved_version == (id(cat), cat.version):
                return False
            cat.save(self.index_dir(enc_id), enc_id)
            self._saved_version = (id(cat), cat.version)
            return True

    # -- encoder and model ---------------------------------------------------------------
    def _build_encoder(self, spec: dict):
        if self._injected_encoder is not None:
            return self._injected_encoder
        from ..encoders import CachedEncoder, EmbeddingCache, load_encoder

        enc = load_encoder(spec["name"], backend=spec.get("backend", "torch"),
                           precision=spec.get("precision", "fp32"), threads=self.config.encoder_threads)
        return CachedEncoder(enc, EmbeddingCache())

    def _encode(self, texts: list[str]) -> np.ndarray:
        t0 = time.perf_counter()
        vecs = np.asarray(self.encoder.encode(texts), np.float32)
        if self.metrics is not None:
            self.metrics.encode_seconds.observe(time.perf_counter() - t0)
            self.metrics.encoded_items.inc(len(texts))
        return vecs

    def load_model(self, path: str | None, progress=None) -> dict:
        """Serve a model folder (None: the content recommender). The new encoder's catalogue
        is prepared while the old model keeps serving; the switch itself is one assignment."""
        folder = load_scorer(path) if path else None
        cfg = self.config
        spec = (folder.encoder if folder is not None and folder.encoder else
                {"name": cfg.encoder, "backend": cfg.encoder_backend, "precision": cfg.encoder_precision})
        encoder = self.encoder if spec == self.encoder_spec and self.encoder is not None else self._build_encoder(spec)
        if self.cat is not None and encoder.model_id == self.encoder.model_id:
            cat = self.cat
        else:
            cat = self._restore_catalogue(encoder, progress)
        scoring = self._make_scoring(folder, encoder)
        pgv = self._pgvector_index(encoder, cat)
        with self._write:
            if cat is not self.cat:
                self._catch_up(cat, encoder)
            with self._state:
                self.encoder, self.encoder_spec, self.cat, self.scoring = encoder, spec, cat, scoring
                self.pgv = pgv
                self.pid = profile_id(encoder.model_id, scoring.half_life)
                self._users.clear()
        if path:
            self.store.record_model(str(Path(path).resolve()), scoring.kind, folder.meta)
        if self.metrics is not None:
            self.metrics.set_model(scoring.name, scoring.kind)
        return self.model_info()

    def _make_scoring(self, folder: LiveScorer | None, encoder) -> Scoring:
        """The Scoring of a loaded model folder's scorer (None: the content model of ``encoder``)."""
        cfg = self.config
        torch = sys.modules.get("torch")
        if torch is not None:  # a torch model is served: the setting the encoder uses too
            torch.set_num_threads(max(1, int(cfg.encoder_threads)))
        if folder is None:
            content = ContentScorer([], [], half_life=cfg.half_life, temperature=cfg.temperature)
            return Scoring(content, _content_name(encoder), cfg.half_life, cfg.temperature)
        # a saved half_life of None is the plain mean, not "unset": only folders without
        # one (popular, EASE, the sequence models) take the config's
        half_life = folder.half_life if "half_life" in folder.meta else cfg.half_life
        return Scoring(folder, folder.name, half_life, folder.temperature, folder.path)

    def _pgvector_index(self, encoder, cat: Catalogue):
        """index = "pgvector": the SQL search over the encoder's table (its table and its
        HNSW or IVFFlat index are created here, at load time, never on a request); else None."""
        cfg = self.config
        if cfg.index != "pgvector":
            return None
        if self.pgv is not None and self.pgv.encoder_id == encoder.model_id:
            return self.pgv
        from .pgvector_index import PgVectorIndex

        return PgVectorIndex(self.store, encoder.model_id, cat.dim, ef_search=cfg.hnsw_ef_search,
                             iterative_scan=cfg.pgvector_iterative_scan, max_scan_tuples=cfg.pgvector_max_scan_tuples,
                             probes=cfg.ivfflat_probes, max_probes=cfg.ivfflat_max_probes)

    def _search(self, cat: Catalogue, query: np.ndarray, k: int, exclude: np.ndarray | None,
                mask: np.ndarray | None, filters: list[tuple[str, str]] | None) -> tuple[np.ndarray, np.ndarray]:
        """The content model's nearest neighbours: PostgreSQL (pgvector) when configured, else
        the in-memory index. ``mask`` is ``filters`` as the catalogue evaluates them."""
        pgv = self.pgv
        if pgv is not None and not self._filter_in_memory(cat, filters):
            return pgv.search(cat, query, k, exclude=exclude, filters=filters or [])
        return cat.search(query, k, exclude=exclude, mask=mask)

    def _filter_in_memory(self, cat: Catalogue, filters: list[tuple[str, str]] | None) -> bool:
        """With pgvector: answer a filter that selects at most ``pgvector_filter_scan_rows``
        items exactly from the in-memory matrix. Its rows cost ∝ their number (8.8 ms for
        25k rows at 1M × 256-d, measured), while a walk toward a category far from the profile
        may visit ``pgvector_max_scan_tuples`` rows (HNSW) or many lists (IVFFlat) before it
        finds k of them.
        The bound is the catalogue's posting-list size, read without building the mask."""
        size = cat.filter_size(filters or [])
        return size is not None and size <= self.config.pgvector_filter_scan_rows

    def model_info(self) -> dict:
        s = self.scoring
        return {"name": s.name, "kind": s.kind, "path": s.path, "half_life": s.half_life,
                "temperature": s.temperature, "encoder": self.encoder.model_id,
                "weight": getattr(s.scorer, "weight", None)}

    def _restore_catalogue(self, encoder, progress=None) -> Catalogue:
        """Vectors from the store (encoding only items that have none for this encoder),
        the graph from disk when a saved one matches, then the changes it missed."""
        st, cfg = self.store, self.config
        enc_id = encoder.model_id
        live = st.live_items()
        vecs = st.vectors(enc_id)
        self._encode_missing(encoder, [i for i, *_ in live], vecs, progress)
        counts = {k: float(v) for k, v in st.item_event_counts().items()}
        fields = {i: f for i, f, _, _ in live}
        created = {i: c for i, _, c, _ in live}
        # with pgvector the in-memory catalogue stays exact: no faiss graph next to PostgreSQL's
        options = {"index": "exact" if cfg.index == "pgvector" else cfg.index,
                   "hnsw_threshold": cfg.hnsw_threshold, "hnsw_m": cfg.hnsw_m,
                   "ef_construction": cfg.hnsw_ef_construction, "ef_search": cfg.hnsw_ef_search}
        cat = None
        saved = Catalogue.read_saved(self.index_dir(enc_id), enc_id)
        if saved is not None:
            cat = Catalogue.restore(*saved, vecs, fields, created, counts, **options)
            if cat is not None:
                self._catch_up(cat, encoder, vecs)
                if set(cat.pos) != set(fields):
                    log.warning("saved index disagrees with the store; rebuilding it")
                    cat = None
                elif cat.n_dead > cat.n // 5:
                    cat.compact()  # start-up is the one moment a graph rebuild blocks nobody
        if cat is None:
            dim = int(encoder.dim) if not vecs else len(next(iter(vecs.values())))
            cat = Catalogue(dim, **options)
            if live:
                ids = [i for i, *_ in live]
                cat.upsert(ids, np.stack([vecs[i] for i in ids]), [fields[i] for i in ids],
                           [created[i] for i in ids], [counts.get(i, 0.0) for i in ids], seq=max(s for *_, s in live))
        return cat

    def _encode_missing(self, encoder, item_ids: list[str], vecs: dict, progress=None) -> None:
        """Encode the items of ``item_ids`` that have no vector in ``vecs`` (from the store's
        texts), store the vectors, and add them to ``vecs``."""
        missing = [i for i in item_ids if i not in vecs]
        if not missing:
            return
        texts = self.store.item_texts(missing)
        for lo in range(0, len(missing), 512):
            chunk = missing[lo:lo + 512]
            v = np.asarray(encoder.encode([texts[i] for i in chunk]), np.float32)
            self.store.put_vectors(encoder.model_id, chunk, v)
            vecs.update(zip(chunk, v))
            if progress is not None:
                progress("encoding items", lo + len(chunk), len(missing))

    def _catch_up(self, cat: Catalogue, encoder, vecs: dict | None = None) -> int:
        """Apply the store's item changes after ``cat.watermark``; returns how many."""
        changes = self.store.changes_since(cat.watermark)
        if not changes:
            return 0
        live = [i for i, deleted, *_ in changes if not deleted]
        vecs = dict(vecs or {})
        need = [i for i in live if i not in vecs]
        if need:  # read only the changed items' vectors, not the catalogue's
            vecs.update(self.store.vectors(encoder.model_id, need))
            self._encode_missing(encoder, need, vecs)
        for item_id, deleted, fields, created, seq in changes:
            if deleted:
                cat.remove(item_id, seq)
            else:
                cat.upsert([item_id], vecs[item_id][None, :], [fields], [created], seq=seq)
        return len(changes)

    # -- writes -------------------------------------------------------------------------
    def upsert_items(self, items: list[dict]) -> list[dict]:
        """``items``: dicts with item_id, text, fields (already validated). Encoded before
        the transaction; stored and searchable when this returns."""
        if not items:
            return []
        ids = [it["item_id"] for it in items]
        first: dict[str, int] = {}
        for k, i in enumerate(ids):
            if first.setdefault(i, k) != k:
                raise InputError([{"loc": ["body", "items", k, "item_id"], "type": "value_error",
                                   "msg": f"item id {i!r} appears more than once in the batch"}])
        vecs = self._encode([it["text"] for it in items])
        enc_id = self.encoder.model_id
        with self._write:
            if self.encoder.model_id != enc_id:  # a model swap changed the encoder meanwhile
                vecs = self._encode([it["text"] for it in items])
            res = self.store.upsert_items(items, vecs, self.encoder.model_id)
            with self._state:
                self.cat.upsert(ids, vecs, [it["fields"] for it in items], [r["created_at"] for r in res],
                                seq=max(r["seq"] for r in res))
        return res

    def delete_item(self, item_id: str) -> None:
        with self._write:
            seq = self.store.delete_item(item_id)
            if seq is None:
                raise NotFound(f"no item {item_id!r}")
            with self._state:
                self.cat.remove(item_id, seq)

    def add_events(self, events: list[dict]) -> dict:
        """``events``: dicts with user_id, item_id, ts, kind, value (types already checked).
        Every item must exist; the batch is stored whole or not at all."""
        with self._write:
            cat = self.cat
            bad = [{"loc": ["body", "events", k, "item_id"], "type": "value_error",
                    "msg": f"unknown item id {e['item_id']!r}"} for k, e in enumerate(events) if e["item_id"] not in cat]
            if bad:
                raise InputError(bad)
            by_user: dict[str, list[dict]] = {}
            for e in events:
                by_user.setdefault(e["user_id"], []).append(e)
            gamma = decay_factor(self.scoring.half_life)
            new_states, rows = {}, []
            for user, evs in by_user.items():
                state = self._user_state(user)
                evs_sorted = sorted(evs, key=lambda e: e["ts"])  # stable: batch order breaks ties
                ts = np.array([e["ts"] for e in evs_sorted])
                prof = state.profile or Profile.empty(cat.dim)
                keep = self.scoring.seq_keep
                if ts.min() >= prof.last_ts:
                    prof = prof.folded(np.stack([cat.vector(e["item_id"]) for e in evs_sorted]), ts, gamma)
                    recent = state.recent + tuple(e["item_id"] for e in evs_sorted)
                else:  # an event from the past: recompute this user's profile exactly
                    history = self.store.history(user) + [(e["item_id"], e["ts"]) for e in evs_sorted]
                    prof = self._profile_from(history)
                    recent = tuple(i for i, _ in sorted(history, key=lambda h: h[1]))  # stable: store order
                new_states[user] = UserState(prof, tuple(dict.fromkeys(state.seen + tuple(e["item_id"] for e in evs))),
                                             recent[-keep:] if keep else ())
                rows.append(prof.to_row(self.pid, user))
            last_id = self.store.add_events(
                [{"user_id": e["user_id"], "item_id": e["item_id"], "ts": e["ts"], "kind": e["kind"],
                  "value": e["value"]} for e in events], rows,
                running=[x for x in self._experiments.values() if x.running])
            with self._state:
                for user, st in new_states.items():
                    self._remember(user, st)
                cat.add_counts([e["item_id"] for e in events])
        if self.metrics is not None:
            self.metrics.events.inc(len(events))
        return {"stored": len(events), "users": len(by_user), "last_event_id": last_id}

    # -- users -------------------------------------------------------------------------
    def _profile_from(self, history: list[tuple[str, float]], half_life: float | None | str = "served"
                      ) -> Profile | None:
        """Exact profile of a (item_id, ts) history, oldest first; deleted items are skipped.
        ``half_life``: the served model's unless given (an experiment arm's may differ)."""
        hist = sorted(history, key=lambda h: h[1])
        live = [(i, t) for i, t in hist if i in self.cat]
        if not live:
            return None
        V = np.stack([self.cat.vector(i) for i, _ in live])
        half_life = self.scoring.half_life if half_life == "served" else half_life
        return Profile.from_history(V, np.array([t for _, t in live]), half_life, self.cat.dim)

    def _user_state(self, user_id: str) -> UserState:
        raw = self._users.get(user_id)
        if raw is not None:
            st = UserState(Profile(*raw[0]) if raw[0] is not None else None, raw[1], raw[2])
            with self._state:
                if user_id in self._users:
                    self._users.move_to_end(user_id)
            return st
        row = self.store.profile(self.pid, user_id)
        history = self.store.history(user_id)
        if row is not None:
            prof = Profile.from_row(row)
        else:  # no profile yet under this model (new user, or a model swap changed the decay)
            prof = self._profile_from(history)
        keep = self.scoring.seq_keep
        st = UserState(prof, tuple(dict.fromkeys(i for i, _ in history)),
                       tuple(i for i, _ in history[-keep:]) if keep else ())
        with self._state:
            self._remember(user_id, st)
        return st

    def is_cached(self, user_id: str) -> bool:
        """Whether a read for this user is pure in-memory work (no database query)."""
        return user_id in self._users

    def _remember(self, user_id: str, st: UserState) -> None:
        # stored as plain tuples: CPython stops tracking a tuple of untracked values (arrays,
        # numbers, strings) once a collection has looked at it, but never a tuple subclass
        self._users[user_id] = (tuple(st.profile) if st.profile is not None else None, tuple(st.seen),
                                tuple(st.recent))
        self._users.move_to_end(user_id)
        while len(self._users) > self.config.cache_users:
            self._users.popitem(last=False)

    # -- reads -------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 10, exclude_seen: bool = True,
                  filters: list[tuple[str, str]] | None = None, experiment: str | None = None,
                  explain: bool = False) -> dict:
        """Top-k for a user under the served model. With ``experiment``: the list that
        experiment serves this user (its arm's model, or two arms interleaved), logged as an
        exposure — the only case where a read writes to the database. With ``explain``: every
        item carries its exact score split and a sentence (:mod:`leanrec.service.explain`)."""
        if experiment is not None:
            return self._recommend_in_experiment(experiment, user_id, k, exclude_seen, filters, explain)
        st = self._fresh_state(user_id)
        pre = self._pgvector_prefetch(st, k, exclude_seen, filters)
        with self._state:
            scoring = self.scoring
            out = self._finish(user_id, self._rank(st, k, exclude_seen, filters, scoring, pre))
        if explain:
            self._explain(user_id, out, {None: (st, scoring)})
        return out

    def _explain(self, user_id: str, out: dict, parts: dict) -> None:
        """Explanations for a finished list; ``parts`` maps a team (None: the whole list) to
        the (user state, scoring) that ranked its items. Store reads happen before the lock."""
        from .explain import explain_answer, prefetch

        pre = prefetch(self, user_id, out)
        history = tuple(i for i, _ in pre["history"])
        with self._state:
            for team, (st, scoring) in parts.items():
                sub = out if team is None else {**out, "items": [i for i in out["items"] if i.get("team") == team]}
                explain_answer(user_id, live_user(st, history), self.cat, scoring.scorer, sub, pre)

    def _finish(self, user_id: str, ranked: Ranked, experiment: dict | None = None,
                teams: list[str] | None = None) -> dict:
        """The one place where the final list — positions, scores and the scoring that made
        them — is known, before it becomes a response body. Called under ``_state``."""
        out = self._answer(user_id, ranked.cat, ranked.pos, ranked.scores, ranked.model, ranked.temperature,
                           ranked.cold)
        if experiment is not None:
            out["experiment"] = experiment
            for item, team in zip(out["items"], teams or ()):
                item["team"] = team
        return out

    def _fresh_state(self, user_id: str) -> UserState:
        st = self._user_state(user_id)
        if self.scoring.seq_keep and st.seen and not st.recent:  # cached while a model swap was under way
            with self._state:
                self._users.pop(user_id, None)
            st = self._user_state(user_id)
        return st

    def _pgvector_prefetch(self, st: UserState, k: int, exclude_seen: bool,
                           filters: list[tuple[str, str]] | None) -> tuple | None:
        """index = "pgvector", content model, a user with a history: the SQL search, run
        *before* ``_state`` is taken so that readers do not queue behind each other's database
        round trips. (pgvector index, scoring, ids, scores); None in every other case.

        A walk that ends short of k (a filter whose items lie far from the user's profile:
        the nearest ``max_scan_tuples`` rows hold none of them) is not finished in SQL, where
        exactness means scanning the table — seconds at a million items — but by
        :meth:`_rank` on the in-memory matrix the service keeps anyway (tens of ms)."""
        pgv, scoring = self.pgv, self.scoring
        if pgv is None or not scoring.scorer.by_query or st.profile is None or st.profile.n_events == 0 or not st.seen:
            return None
        if self._filter_in_memory(self.cat, filters):  # a small filter: :meth:`_rank` scans its rows
            return None
        ids, scores = pgv.search_ids(scoring.scorer.query(live_user(st), self.cat), k,
                                     exclude_ids=st.seen if exclude_seen else (),
                                     filters=filters or [], exact_fallback=False)
        return pgv, scoring, ids, scores

    def _rank(self, st: UserState, k: int, exclude_seen: bool, filters: list[tuple[str, str]] | None,
              scoring: Scoring, pre: tuple | None = None) -> Ranked:
        """Top-k positions and scores of ``scoring`` for a user state. Called under ``_state``.
        ``pre``: a :meth:`_pgvector_prefetch` result, used if the index and model are still served."""
        cat = self.cat
        if (scoring.scorer.by_query and pre is not None and pre[0] is self.pgv and pre[1] is scoring
                and len(pre[2]) >= k):  # PostgreSQL answered: no mask (23 ms median above 50k items at 1M)
            pos, scores = pre[0].positions(cat, pre[2], pre[3])
            return Ranked(cat, pos, scores, scoring.name, scoring.temperature, False, scoring)
        mask = cat.filter_mask(filters or [])
        if st.profile is None or st.profile.n_events == 0 or not st.seen:
            return self._cold_start(k, mask, scoring)
        seen = np.fromiter((cat.pos[i] for i in st.seen if i in cat.pos), np.int64) if exclude_seen else None
        user = live_user(st)
        if scoring.scorer.by_query:  # ⟨query, V_i⟩: the index ranks it
            query = scoring.scorer.query(user, cat)
            if pre is not None and pre[0] is self.pgv and pre[1] is scoring:  # the walk ended short
                pos, scores = cat.search(query, k, exclude=seen, mask=mask)  # exact, in memory
            else:
                pos, scores = self._search(cat, query, k, seen, mask, filters)
        else:
            full = scoring.scorer.score([user], cat)[0].astype(np.float64)
            ok = cat.allowed(seen, mask)
            cand = np.flatnonzero(ok)
            pos, scores = _top(full[cand], cand, k)
        return Ranked(cat, pos, scores, scoring.name, scoring.temperature, False, scoring)

    def _cold_start(self, k: int, mask: np.ndarray | None, scoring: Scoring) -> Ranked:
        """Users with no history: the most popular items interleaved with the newest ones
        (a ``cold_start_new_share`` of the slots), score log(1 + events)."""
        cat = self.cat
        ok = cat.allowed(None, mask)
        n_ok = int(np.count_nonzero(ok))
        n_new = round(min(k, n_ok) * self.config.cold_start_new_share)
        popular, _ = _top(np.where(ok, cat.counts[:cat.n], -np.inf), np.arange(cat.n), min(k, n_ok) - n_new)
        ok[popular] = False
        newest, _ = _top(np.where(ok, cat.created_at[:cat.n], -np.inf), np.arange(cat.n), n_new)
        order, a, b = [], list(popular), list(newest)
        while (a or b) and len(order) < k:
            if a:
                order.append(a.pop(0))
            if b and len(order) < k:
                order.append(b.pop(0))
        pos = np.array(order, np.int64)
        return Ranked(cat, pos, np.log1p(cat.counts[pos]), COLD_START_MODEL, 1.0, True, scoring)

    def similar(self, item_id: str, k: int = 10, filters: list[tuple[str, str]] | None = None) -> dict:
        with self._state:
            cat = self.cat
            if item_id not in cat:
                raise NotFound(f"no item {item_id!r}")
            mask = cat.filter_mask(filters or [])
            pos, scores = self._search(cat, cat.vector(item_id), k, np.array([cat.pos[item_id]]), mask, filters)
            return {"item_id": item_id, "items": [{"item_id": cat.ids[p], "score": float(s)}
                                                  for p, s in zip(pos, scores)],
                    "model": _content_name(self.encoder), "index": self._index_kind(cat)}

    @staticmethod
    def _answer(user_id, cat, pos, scores, model, temperature, cold) -> dict:
        scores = np.asarray(scores, np.float64)
        proba = softmax(scores[None, :], temperature)[0] if len(scores) else scores
        return {"user_id": user_id, "model": model, "cold_start": cold,
                "items": [{"item_id": cat.ids[p], "score": float(s), "probability": float(q)}
                          for p, s, q in zip(pos, scores, proba)]}

    # -- experiments ---------------------------------------------------------------------
    def create_experiment(self, spec: dict) -> dict:
        """Start an experiment. ``spec``: id, mode, arms [{name, share, model}], and optionally
        attribution_window_s and click_kinds (types already checked by the caller). Every
        arm's model is loaded now, so a bad folder is a 422 naming the arm instead of a
        failing list later; an id already used (running or stopped) is a 409."""
        arms = [dict(a) for a in spec["arms"]]
        errors = check_arms(spec["mode"], arms)
        if errors:
            raise InputError(errors)
        arms = equal_shares(arms)
        for k, a in enumerate(arms):
            if a.get("model"):
                a["model"] = str(Path(a["model"]).expanduser().resolve())
            try:
                self._arm_scoring(Arm(a["name"], float(a["share"]), a.get("model")))
            except (FileNotFoundError, ValueError) as exc:
                errors.append({"loc": ["body", "arms", k, "model"], "type": "value_error",
                               "msg": f"arm {a['name']!r}: {exc}"})
        if errors:
            raise InputError(errors)
        exp = Experiment(spec["id"], spec["mode"], [Arm(a["name"], float(a["share"]), a.get("model")) for a in arms],
                         attribution_window_s=float(spec.get("attribution_window_s") or DEFAULT_WINDOW_S),
                         click_kinds=tuple(spec.get("click_kinds") or DEFAULT_CLICK_KINDS), created_at=time.time())
        with self._write:  # add_events reads the running experiments under this lock
            if not self.store.add_experiment(exp.to_dict()):
                raise Conflict(f"an experiment {exp.id!r} already exists; experiment ids are never reused")
            self._experiments = {**self._experiments, exp.id: exp}
        return exp.to_dict()

    def experiments(self) -> list[dict]:
        return [e.to_dict() for e in self._experiments.values()]

    def experiment(self, experiment_id: str) -> dict:
        return self._get_experiment(experiment_id).to_dict()

    def _get_experiment(self, experiment_id: str) -> Experiment:
        exp = self._experiments.get(experiment_id)
        if exp is None:
            raise NotFound(f"no experiment {experiment_id!r}")
        return exp

    def stop_experiment(self, experiment_id: str) -> dict:
        """Stop serving and attributing: later lists and clicks are not part of the experiment
        (its report stays readable). Stopping a stopped experiment changes nothing."""
        with self._write:
            exp = self._get_experiment(experiment_id)
            if exp.running:
                now = time.time()
                self.store.stop_experiment(exp.id, now)
                stopped = Experiment.from_dict({**exp.to_dict(), "status": "stopped", "stopped_at": now})
                self._experiments = {**self._experiments, exp.id: stopped}
                exp = stopped
        return exp.to_dict()

    def experiment_report(self, experiment_id: str) -> dict:
        """The experiment's statistics (``experiments.ab_report`` / ``interleave_report``)."""
        exp = self._get_experiment(experiment_id)
        rows = self.store.exposure_outcomes(exp.id)
        if exp.mode == "ab":
            report = ab_report(exp.arms, [(u, arm, sum(c.values())) for _, u, arm, c in rows])
        else:
            a, b = exp.arms[0].name, exp.arms[1].name
            report = interleave_report(exp.arms, [(u, c.get(a, 0), c.get(b, 0)) for _, u, _, c in rows])
        return {"experiment": exp.to_dict(), **report}

    def _arm_scoring(self, arm: Arm) -> Scoring:
        """An arm's Scoring, loaded once per (folder, encoder) and cached. The service holds
        one encoder and one catalogue, so a folder that needs another encoder is refused."""
        encoder = self.encoder
        key = (arm.model, encoder.model_id)
        scoring = self._arm_scorings.get(key)
        if scoring is None:
            folder = load_scorer(arm.model) if arm.model else None
            if (folder is not None and folder.encoder and self.encoder_spec is not None
                    and encoder_key(folder.encoder) != encoder_key(self.encoder_spec)):
                raise ValueError(f"the model needs the encoder {folder.encoder.get('name')!r}, but the service's "
                                 f"catalogue is encoded with {self.encoder_spec.get('name')!r}; every arm must use "
                                 "the served encoder")
            scoring = self._make_scoring(folder, encoder)
            self._arm_scorings[key] = scoring
        return scoring

    def _arm_state(self, user_id: str, st: UserState, scoring: Scoring) -> UserState:
        """The user state an arm's scoring needs. The cached state carries the served model's
        profile (its half-life) and sequence window; an arm with another half-life or a longer
        window gets its own, computed exactly from the stored history."""
        main = self.scoring
        if scoring.half_life == main.half_life and scoring.seq_keep <= main.seq_keep:
            return st
        history = self.store.history(user_id)
        keep = scoring.seq_keep
        return UserState(self._profile_from(history, scoring.half_life), st.seen,
                         tuple(i for i, _ in history[-keep:]) if keep else ())

    def _recommend_in_experiment(self, experiment_id: str, user_id: str, k: int, exclude_seen: bool,
                                 filters: list[tuple[str, str]] | None, explain: bool = False) -> dict:
        """A/B: the user's arm ranks. Interleaving: both arms rank k items and a team draft
        mixes them, its coins seeded by (experiment id, exposure id), so the exposure row
        replays the list. The list and its exposure row commit together."""
        exp = self._get_experiment(experiment_id)
        if not exp.running:
            raise Conflict(f"experiment {exp.id!r} is stopped; request recommendations without it")
        arms = [exp.assign(user_id)] if exp.mode == "ab" else list(exp.arms)
        try:
            scorings = [self._arm_scoring(a) for a in arms]
        except (FileNotFoundError, ValueError) as exc:
            raise Conflict(f"experiment {exp.id!r} cannot serve: {exc}") from None
        st = self._fresh_state(user_id)
        states = [self._arm_state(user_id, st, sc) for sc in scorings]
        tag = {"id": exp.id, "mode": exp.mode}
        with self.store.new_exposure(exp.id, user_id, arms[0].name if exp.mode == "ab" else None,
                                     time.time()) as exposure:
            tag["exposure_id"] = exposure["id"]
            with self._state:
                ranked = [self._rank(s, k, exclude_seen, filters, sc) for s, sc in zip(states, scorings)]
                cat = self.cat
                if exp.mode == "ab":
                    final, teams = ranked[0], None
                    tag["arm"] = arms[0].name
                else:
                    lists = [[cat.ids[p] for p in r.pos] for r in ranked]
                    score = [dict(zip(ids, r.scores)) for ids, r in zip(lists, ranked)]
                    mixed = team_draft(lists[0], lists[1], k, f"{exp.id}:{exposure['id']}",
                                       (arms[0].name, arms[1].name))
                    teams = [t for _, t in mixed]
                    pos = np.array([cat.pos[i] for i, _ in mixed], np.int64)
                    scores = np.array([score[0 if t == arms[0].name else 1][i] for i, t in mixed], np.float64)
                    final = Ranked(cat, pos, scores, f"interleave({ranked[0].model},{ranked[1].model})", 1.0,
                                   ranked[0].cold and ranked[1].cold, None)
                out = self._finish(user_id, final, tag, teams)
            exposure["items"], exposure["teams"] = [i["item_id"] for i in out["items"]], teams
        if explain:  # after the exposure commits: explaining is not part of what was shown
            self._explain(user_id, out, {None: (states[0], scorings[0])} if exp.mode == "ab" else
                          {a.name: (s, sc) for a, s, sc in zip(arms, states, scorings)})
        return out

    def get_item(self, item_id: str) -> dict:
        item = self.store.get_item(item_id)
        if item is None:
            raise NotFound(f"no item {item_id!r}")
        return item

    def stats(self) -> dict:
        cat = self.cat
        return {"items": cat.n_alive if cat else 0, "tombstones": cat.n_dead if cat else 0,
                "index": self._index_kind(cat) if cat else None, "cached_users": len(self._users)}

    def _index_kind(self, cat: Catalogue) -> str:
        return "pgvector" if self.pgv is not None else cat.kind


def preflight(config: ServiceConfig) -> None:
    """Fail fast, before the server binds, on what would otherwise surface as a service
    that never becomes ready: an unreachable database, a broken key file or model folder."""
    if config.api_key_file:
        from .keys import read_key_file

        read_key_file(config.api_key_file)
    if config.model:
        load_scorer(config.model)
    store = Store(config.db)
    try:
        error = store.connection_error()
    finally:
        store.close()
    if error is not None:
        raise ConnectionError(f"cannot connect to the store {store.describe()}: {error}")


def check_timestamp(ts: float, config: ServiceConfig, loc: list) -> None:
    now = time.time()
    if not math.isfinite(ts) or ts < config.min_timestamp or ts > now + config.max_future_s:
        raise InputError([{"loc": loc, "type": "value_error",
                           "msg": f"timestamp {ts!r} is out of range [{config.min_timestamp:.0f}, "
                                  f"now + {config.max_future_s:.0f} s]"}])
