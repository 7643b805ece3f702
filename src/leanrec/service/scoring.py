"""What the service serves with: the model (its scorer), a user's cached state, a finished ranking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..models.live import LiveScorer, LiveUser
from .catalogue import Catalogue
from .profiles import Profile

COLD_START_MODEL = "cold-start:popular+new"


def content_name(encoder) -> str:
    """``content:<encoder>`` without the weights fingerprint, as lists report it."""
    return f"content:{encoder.model_id.split('@')[0]}"


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
