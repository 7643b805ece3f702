"""Checks on request content that the schema cannot express: filters and timestamps."""

from __future__ import annotations

import math
import re
import time

from .config import ServiceConfig
from .errors import InputError

FILTER_RE = re.compile(r"^\s*([A-Za-z0-9_.-]{1,64})\s*:(.{1,256})$")


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


def check_timestamp(ts: float, config: ServiceConfig, loc: list) -> None:
    now = time.time()
    if not math.isfinite(ts) or ts < config.min_timestamp or ts > now + config.max_future_s:
        raise InputError([{"loc": loc, "type": "value_error",
                           "msg": f"timestamp {ts!r} is out of range [{config.min_timestamp:.0f}, "
                                  f"now + {config.max_future_s:.0f} s]"}])
