"""Start, stop and persist; load a model and its encoder; restore the catalogue from the store.

Part of :class:`~leanrec.service.core.RecService` (see its docstring for the locks).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..models.content import ContentScorer
from ..models.live import LiveScorer
from ..models.registry import load_scorer
from .catalogue import Catalogue
from .config import ServiceConfig
from .experiments import (
    Experiment,
)
from .profiles import profile_id
from .scoring import (
    Scoring,
    content_name,
)
from .store import Store, StoreError, scrub

log = logging.getLogger("leanrec.service")


class Lifecycle:
    def start(self, progress: Callable[[str, int, int], None] | None = None) -> Lifecycle:
        """Migrate the store, sync API keys, load the model and restore the catalogue."""
        try:
            self.store.migrate()
            if self.config.api_key_file:
                from .keys import loose_permissions

                warning = loose_permissions(self.config.api_key_file)
                if warning:
                    log.warning("%s", warning)
            self.reload_api_keys(strict=True)
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
            self.error = scrub(f"{type(exc).__name__}: {exc}", self.config.db)
            raise
        return self

    def key_file_changed(self) -> bool:
        """Whether the API key file differs (mtime, size, inode) from the one last loaded:
        one ``stat`` per authenticated request."""
        path = self.config.api_key_file
        if not path:
            return False
        try:
            st = os.stat(path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            sig = None
        return sig != self._key_file_sig

    def reload_api_keys(self, strict: bool = False) -> None:
        """Sync the key file into the store and serve its keys: a key removed from the file
        is refused from the next request on. A file that cannot be read (mid-edit, removed)
        keeps the keys in force and is logged (``strict``: at start-up, an error)."""
        path = self.config.api_key_file
        with self._write:
            if path:
                from .keys import read_key_file

                sig = None
                try:
                    st = os.stat(path)
                    sig = (st.st_mtime_ns, st.st_size, st.st_ino)
                    entries = read_key_file(path)
                except (OSError, ValueError) as exc:
                    if strict:
                        raise
                    log.error("API key file not reloaded, the keys in force stay: %s", exc)
                    self._key_file_sig = sig  # tried again when the file changes again
                    return
                self.store.replace_api_keys(entries)
                self._key_file_sig = sig
                log.info("API keys loaded from %s (%d keys)", path, len(entries))
            self.api_keys = self.store.api_key_scopes()

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
                self._forget()
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
            return Scoring(content, content_name(encoder), cfg.half_life, cfg.temperature)
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


def preflight(config: ServiceConfig) -> None:
    """Fail fast, before the server binds, on what would otherwise surface as a service
    that never becomes ready: an unreachable database, a broken key file or model folder."""
    if config.api_key_file:
        from .keys import read_key_file

        read_key_file(config.api_key_file)
    if config.model:
        load_scorer(config.model)
    try:
        store = Store(config.db, connect_timeout_s=config.pg_connect_timeout_s)
    except StoreError as exc:
        raise ValueError(str(exc)) from None
    try:
        error = store.connection_error()
    finally:
        store.close()
    if error is not None:
        raise ConnectionError(f"cannot connect to the store {store.describe()}: {error}")
