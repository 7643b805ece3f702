"""Cell parsers: one raw cell from any file format in, a checked value or a message out.

Why this module exists: nothing is coerced silently. Each cell of a table from
:mod:`leanrec.data.formats` (strings from CSV, JSON values from JSONL, Python values from
Arrow for Parquet) goes through exactly one parser here, which returns ``(value, None)``
or ``(None, message)``; the message becomes a
:class:`~leanrec.data.issues.ValidationIssue` in :class:`~leanrec.data.validation.Collector`.
The fast paths convert a whole clean column at once and hand back only the rows they
cannot settle, so the parsers stay the one authority on what is valid.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "MISSING",
    "describe_type",
    "fast_categories",
    "fast_ids",
    "fast_numbers",
    "fast_text",
    "fast_timestamps",
    "parse_categories",
    "parse_id",
    "parse_kind",
    "parse_number",
    "parse_text",
    "parse_timestamp",
]

#: Marks a key that a JSONL record does not have (as opposed to an explicit null).
MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "<missing>"})()


# Each parser returns (value, None) or (None, message). They accept what the three
# formats produce: strings (CSV), JSON values (JSONL), Python values from Arrow (Parquet).


def describe_type(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float, np.number)):
        return "a number"
    if isinstance(v, (list, tuple, np.ndarray)):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def parse_id(v: Any, label: str) -> tuple[str | None, str | None]:
    if v is MISSING:
        return None, "key missing from this record"
    if v is None:
        return None, f"missing {label}"
    if isinstance(v, str):
        s = v.strip()
        return (s, None) if s else (None, f"empty {label}")
    if isinstance(v, (bool, np.bool_)):
        return None, f"{label} must be a string or an integer, got a boolean"
    if isinstance(v, (int, np.integer)):
        return str(int(v)), None
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return None, f"missing {label} (NaN)"
        if math.isfinite(v) and float(v).is_integer():
            return str(int(v)), None
    return None, f"{label} must be a string or an integer, got {describe_type(v)} {v!r}"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_timestamp(v: Any) -> tuple[float | None, str | None]:
    """Unix seconds (number or numeric string) or ISO-8601 (naive means UTC)."""
    if v is MISSING:
        return None, "key missing from this record"
    if v is None:
        return None, "missing timestamp"
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None, "empty timestamp"
        try:
            x = float(s)
        except ValueError:
            try:
                dt = datetime.fromisoformat(s)
            except ValueError:
                return None, f"unparsable timestamp {s!r} (expected Unix seconds or ISO-8601)"
            return _datetime_seconds(dt), None
        return _finite_timestamp(x, s)
    if isinstance(v, (bool, np.bool_)):
        return None, "timestamp must be a number or an ISO-8601 string, got a boolean"
    if isinstance(v, (int, float, np.integer, np.floating)):
        try:
            return _finite_timestamp(float(v), v)
        except OverflowError:
            return None, f"timestamp out of range: {_short(v)}"
    if isinstance(v, datetime):
        if pd.isna(v):
            return None, "missing timestamp"
        return _datetime_seconds(v), None
    if isinstance(v, date):
        return _datetime_seconds(datetime(v.year, v.month, v.day)), None
    return None, f"timestamp must be a number or an ISO-8601 string, got {describe_type(v)}"


def _finite_timestamp(x: float, shown: Any) -> tuple[float | None, str | None]:
    if math.isnan(x):
        return None, "NaN timestamp"
    if not math.isfinite(x):
        return None, f"infinite timestamp {shown!r}"
    return x, None


def _datetime_seconds(dt: datetime) -> float:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    if isinstance(dt, pd.Timestamp):
        return float(dt.timestamp())  # keeps sub-microsecond precision
    return (dt - _EPOCH).total_seconds()


def parse_number(v: Any) -> tuple[float | None, str | None]:
    """A finite number; empty/null/absent means NaN; "NaN", inf and text are errors."""
    if v is MISSING or v is None:
        return math.nan, None
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return math.nan, None
        try:
            x = float(s)
        except ValueError:
            return None, f"not a number: {s!r}"
        if not math.isfinite(x):
            return None, f"not a finite number: {s!r} (leave the cell empty for a missing value)"
        return x, None
    if isinstance(v, (bool, np.bool_)):
        return None, "expected a number, got a boolean"
    if isinstance(v, (int, float, np.integer, np.floating)):
        try:
            x = float(v)
        except OverflowError:
            return None, f"number out of range: {_short(v)}"
        if not math.isfinite(x):
            return None, f"not a finite number: {v!r} (use null for a missing value)"
        return x, None
    return None, f"expected a number, got {describe_type(v)}"


def parse_text(v: Any) -> tuple[str | None, str | None]:
    if v is MISSING or v is None:
        return "", None
    if isinstance(v, str):
        return v, None
    return None, f"text must be a string, got {describe_type(v)} {_short(v)}"


def parse_categories(v: Any, sep: str) -> tuple[list[str] | None, str | None]:
    if v is MISSING or v is None:
        return [], None
    if isinstance(v, str):
        return [p.strip() for p in v.split(sep) if p.strip()], None
    if isinstance(v, (list, tuple, np.ndarray)):
        out = []
        for x in v:
            if x is None:
                continue
            if isinstance(x, str):
                if x.strip():
                    out.append(x.strip())
            elif isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)):
                out.append(str(int(x)))
            else:
                return None, f"list elements must be strings, got {describe_type(x)} {_short(x)}"
        return out, None
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return [str(int(v))], None
    return None, f"expected a {sep!r}-separated string or a list of strings, got {describe_type(v)}"


def parse_kind(v: Any) -> tuple[str | None, str | None]:
    if v is MISSING or v is None:
        return "", None
    if isinstance(v, str):
        return v.strip(), None
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return str(int(v)), None
    return None, f"kind must be a string, got {describe_type(v)}"


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


# Fast paths: plain loops or vectorised conversions for the common clean case (all
# strings from CSV, numbers from JSONL/Parquet); anything unusual goes to the parsers.

_NONE = type(None)


def _types(cells: list) -> set:
    return set(map(type, cells))


def fast_ids(cells: list, label: str):
    types = _types(cells)
    if types <= {str}:
        values = [v.strip() for v in cells]
        return values, [i for i, v in enumerate(values) if not v]
    if types <= {int}:
        return [str(v) for v in cells], []
    return None


def fast_text(cells: list):
    if _types(cells) <= {str}:
        return list(cells), []
    return None


def fast_categories(cells: list, sep: str):
    if _types(cells) <= {str}:
        return [[p.strip() for p in v.split(sep) if p.strip()] for v in cells], []
    return None


def fast_numbers(cells: list):
    if not _types(cells) <= {str, int, float, _NONE}:
        return None
    try:
        arr = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy(dtype="float64")
    except (OverflowError, ValueError, TypeError):  # e.g. a JSON integer beyond float range
        return None
    return arr.tolist(), np.flatnonzero(~np.isfinite(arr)).tolist()


def fast_timestamps(cells: list):
    if not _types(cells) <= {str, int, float}:
        return None
    values: list = []
    redo: list[int] = []
    append = values.append
    fromiso = datetime.fromisoformat
    utc, epoch, isfinite = timezone.utc, _EPOCH, math.isfinite
    for i, v in enumerate(cells):
        try:
            x = float(v)
        except (ValueError, OverflowError):
            try:
                dt = fromiso(v.strip())
            except (ValueError, AttributeError):
                redo.append(i)
                append(None)
                continue
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=utc)
            append((dt - epoch).total_seconds())
            continue
        if not isfinite(x):
            redo.append(i)
        append(x)
    return values, redo
