"""The user cache: each user's profile, seen items and recent window, read through from the store.

Part of :class:`~leanrec.service.core.RecService` (see its docstring for the locks).
"""

from __future__ import annotations

import logging

import numpy as np

from .profiles import Profile
from .scoring import (
    UserState,
)

log = logging.getLogger("leanrec.service")


class UserCache:
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
        """The user's state: from memory, else read from the store (a *fill*) and cached.

        Versioned so that a fill never installs a state older than one a writer installed:
        every install by a writer (and every drop of cached states) takes a new ``_epoch``;
        a fill notes the epoch before its store reads, which therefore see every write of an
        epoch up to that one, and caches its state only if the user is still absent and no
        state newer than its reads was dropped meanwhile (``_dropped``). A cached state is
        therefore always the user's current one, which ``add_events`` builds on.
        Unknown users (no events, no profile) are not cached: their ids cost no memory."""
        raw = self._users.get(user_id)
        if raw is not None:
            st = UserState(Profile(*raw[0]) if raw[0] is not None else None, raw[1], raw[2])
            with self._state:
                if user_id in self._users:
                    self._users.move_to_end(user_id)
            return st
        epoch = self._epoch
        row = self.store.profile(self.pid, user_id)
        history = self.store.history(user_id)
        if row is None and not history:  # unknown: nothing to keep
            return UserState(None, (), ())
        if row is not None:
            prof = Profile.from_row(row)
        else:  # no profile yet under this model (new user, or a model swap changed the decay)
            prof = self._profile_from(history)
        keep = self.scoring.seq_keep
        st = UserState(prof, tuple(dict.fromkeys(i for i, _ in history)),
                       tuple(i for i, _ in history[-keep:]) if keep else ())
        with self._state:
            if user_id not in self._users and self._dropped <= epoch:
                self._remember(user_id, st, epoch)
        return st

    def is_cached(self, user_id: str) -> bool:
        """Whether a read for this user is pure in-memory work (no database query)."""
        return user_id in self._users

    def _install(self, states: dict[str, UserState]) -> None:
        """A writer's new states, after its commit (under ``_write`` and ``_state``)."""
        self._epoch += 1
        for user_id, st in states.items():
            self._remember(user_id, st, self._epoch)

    def _remember(self, user_id: str, st: UserState, epoch: int) -> None:
        # stored as plain tuples: CPython stops tracking a tuple of untracked values (arrays,
        # numbers, strings) once a collection has looked at it, but never a tuple subclass
        self._users[user_id] = (tuple(st.profile) if st.profile is not None else None, tuple(st.seen),
                                tuple(st.recent), epoch)
        self._users.move_to_end(user_id)
        while len(self._users) > self.config.cache_users:
            self._dropped = max(self._dropped, self._users.popitem(last=False)[1][3])

    def _forget(self, user_id: str | None = None) -> None:
        """Drop one user's cached state (None: everyone's, as a model swap does); under
        ``_state``. Fills that began before the drop will not cache what they read."""
        self._epoch += 1
        self._dropped = self._epoch
        if user_id is None:
            self._users.clear()
        else:
            self._users.pop(user_id, None)

    def _fresh_state(self, user_id: str) -> UserState:
        st = self._user_state(user_id)
        if self.scoring.seq_keep and st.seen and not st.recent:  # cached while a model swap was under way
            with self._state:
                self._forget(user_id)
            st = self._user_state(user_id)
        return st
