"""The recommendation service without HTTP: store + encoder + catalogue + profiles + model.

The FastAPI layer (``api.py``) only parses, authorises and serialises; everything a request
does happens here, so the same behaviour is available to a Python caller or a test.
:class:`RecService` is assembled from rooms of one job each: :mod:`.lifecycle` (start, stop,
model and encoder loading, catalogue restore), :mod:`.writes` (items, events), :mod:`.users`
(the user cache), :mod:`.reads` (lists, similar items, explanations) and
:mod:`.live_experiments` (online experiments). No model formula lives here: every score is
the served model's scorer's (:mod:`leanrec.models.live`).

Concurrency: one process owns the in-memory state. ``_write`` serialises writers (database
transaction, then the in-memory change, so memory follows commit order); ``_state`` guards
the in-memory structures and is held by readers only for the search itself and by writers
only for the in-memory change — never across a database commit or an encoder call. The
user cache is versioned (:meth:`.users.UserCache._user_state`): a read that loads a user
from the store never caches its copy over a state a writer installed after that load began.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from .catalogue import Catalogue
from .config import ServiceConfig
from .experiments import Experiment
from .lifecycle import Lifecycle
from .live_experiments import LiveExperiments
from .reads import Reads
from .scoring import Scoring
from .store import Store
from .users import UserCache
from .writes import Writes


class RecService(Lifecycle, Writes, UserCache, Reads, LiveExperiments):
    def __init__(self, config: ServiceConfig, *, encoder=None, metrics=None):
        self.config = config.check()
        # index = "pgvector": vectors must live in pgvector tables (an error at start-up if the
        # server has no extension); otherwise the store uses them when it finds the extension
        self.store = Store(config.db, vectors="pgvector" if config.index == "pgvector" else "auto",
                           hnsw_m=config.hnsw_m, hnsw_ef_construction=config.hnsw_ef_construction,
                           ann=config.pgvector_ann, ivfflat_lists=config.ivfflat_lists,
                           busy_timeout_s=config.sqlite_busy_timeout_s, connect_timeout_s=config.pg_connect_timeout_s,
                           statement_timeout_s=config.pg_statement_timeout_s)
        self.metrics = metrics
        self._injected_encoder = encoder
        self._write = threading.RLock()
        self._state = threading.RLock()
        # user id -> (UserState as plain tuples..., epoch); versioned, see UserCache._user_state
        self._users: OrderedDict[str, tuple] = OrderedDict()
        self._epoch = 0    # bumped by every writer's install and every drop
        self._dropped = 0  # the newest epoch of a state dropped from _users
        self.encoder = None
        self.encoder_spec: dict | None = None
        self.cat: Catalogue | None = None
        self.pgv = None  # PgVectorIndex of the served encoder when index = "pgvector"
        self.scoring: Scoring | None = None
        self.pid = ""
        self.ready = False
        self.error: str | None = None
        self.api_keys: dict[str, str] = {}
        self._key_file_sig: tuple | None = None  # (mtime_ns, size, inode) of the key file loaded
        self._saved_version = (None, -1)
        self._stop = threading.Event()
        self._persister: threading.Thread | None = None
        self._experiments: dict[str, Experiment] = {}
        self._arm_scorings: dict[tuple, Scoring] = {}  # (model path, encoder id) -> Scoring
