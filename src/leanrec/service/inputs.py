"""Checks on request content that the schema cannot express: filters and timestamps."""

from __future__ import annotations

import datetime as dt
import math
import re
import time

from .config import ServiceConfig
from .errors import InputError

FILTER_RE = re.compile(r"^\s*([A-Za-z0-9_.-]{1,64})\s*:(.{1,256})$")


#: filters one request may carry: each is a mask over the whole catalogue, so an unbounded
#: number is unbounded work for one anonymous GET
MAX_FILTERS = 20


def parse_filters(values: list[str] | None) -> list[tuple[str, str]]:
    """``["category:Books", "brand:Acme,color:red"]`` → [(field, value), ...] (all must hold);
    at most :data:`MAX_FILTERS` of them."""
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
            if len(out) > MAX_FILTERS:
                raise InputError([{"loc": ["query", "filter"], "type": "value_error",
                                   "msg": f"at most {MAX_FILTERS} filters per request, got more"}])
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
