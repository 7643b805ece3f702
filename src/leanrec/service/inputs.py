"""Checks on request content that the schema cannot express: filters and timestamps."""

from __future__ import annotations

import datetime as dt
import math
import re
import time

from .config import ServiceConfig
from .errors import InputError

#: a request carries at most this many ``filter`` values, each at most this many pairs: every
#: pair is a mask over the catalogue, so an unbounded number is unbounded work for one GET
MAX_FILTERS, MAX_PAIRS = 20, 20


FILTER_RE = re.compile(r"^\s*([A-Za-z0-9_.-]{1,64})\s*:([^,\x00-\x1f]{1,256})$")
#: one ``filter`` query value: ``field:value`` pairs separated by commas (values hold no comma
#: and no control character); the routes declare it, so it is checked and documented as one rule
_PAIR = r"\s*[A-Za-z0-9_.-]{1,64}\s*:[^,\x00-\x1f]{1,256}"
FILTER_PATTERN = rf"^{_PAIR}(,{_PAIR}){{0,{MAX_PAIRS - 1}}}$"


def parse_filters(values: list[str] | None) -> list[tuple[str, str]]:
    """``["category:Books", "brand:Acme,color:red"]`` → [(field, value), ...] (all must hold).
    The routes have already checked :data:`FILTER_PATTERN` and :data:`MAX_FILTERS`."""
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


def event_time(value: float | dt.datetime | None, now: float) -> float:
    """Unix seconds of an event's ``timestamp``: ``now`` when absent; an ISO 8601 time without
    a zone is UTC (never the server's local zone, which would shift events by its offset)."""
    if value is None:
        return now
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)).timestamp()
    return float(value)


def check_timestamp(ts: float, config: ServiceConfig, loc: list) -> None:
    now = time.time()
    if not math.isfinite(ts) or ts < config.min_timestamp or ts > now + config.max_future_s:
        raise InputError([{"loc": loc, "type": "value_error",
                           "msg": f"timestamp {ts!r} is out of range [{config.min_timestamp:.0f}, "
                                  f"now + {config.max_future_s:.0f} s]"}])
