"""Read item catalogues and event logs from CSV, TSV, JSONL and Parquet files.

Why this module exists: every later stage (splits, encoders, models, evaluation) trusts
the invariants of :class:`~leanrec.data.schema.Items` and
:class:`~leanrec.data.schema.Events`. A bad row that slips through surfaces much later as
a confusing error or, worse, as a silently wrong metric. So the readers check every row
*once*, at the border, and say exactly where each problem is: the file, the line (the
physical line of a CSV record, the line of a JSONL record, the row of a Parquet table)
and the field. They collect every problem instead of stopping at the first, so one run
is enough to fix a file.

Two modes:

* ``strict=True`` (the default): any problem raises :class:`DataValidationError`, which
  carries every :class:`ValidationIssue` found.
* ``strict=False``: bad rows are left out and each one is listed in the returned
  :class:`ValidationReport`; nothing is dropped silently.

Problems with the file as a whole (a required column missing from the header, an empty
or unreadable file) leave no row usable, so they raise :class:`DataValidationError` in
both modes.

Column mappings (:class:`ItemColumns`, :class:`EventColumns`) say which column of the
file holds each canonical field, so files from any source load without renaming.
Nothing is coerced silently: CSV cells are read as text and every conversion (numbers,
timestamps, lists) is checked here.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd

from .schema import (
    ITEM_ID,
    KIND,
    TEXT,
    TIMESTAMP,
    USER_ID,
    VALUE,
    Events,
    Items,
    Dataset,
    coerce_ids_like,
)

__all__ = [
    "ItemColumns",
    "EventColumns",
    "ValidationIssue",
    "ValidationReport",
    "DataValidationError",
    "FORMATS",
    "detect_format",
    "read_items",
    "read_events",
    "load_dataset",
]

#: Supported formats and the file extensions that select them.
FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "tsv": (".tsv", ".tab"),
    "jsonl": (".jsonl", ".ndjson"),
    "parquet": (".parquet", ".pq"),
}
_FORMAT_ALIASES = {"ndjson": "jsonl", "pq": "parquet", "tab": "tsv"}

# Same integer pattern as ``schema.normalize_ids``: ids that match it are compared as
# integers, so "007" and "7" are the same item once loaded.
_INT_ID = re.compile(r"[+-]?\d{1,18}")

# Marks a key that a JSONL record does not have (as opposed to an explicit null).
_MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "<missing>"})()

_MAX_LISTED = 20


# --------------------------------------------------------------------------- mappings


FieldSpec = str | Sequence[str | tuple[str, str]] | Mapping[str, str]


def _field_pairs(spec: Any, what: str) -> tuple[tuple[str, str], ...]:
    """Turn a field spec into ``(canonical name, file column)`` pairs.

    A spec is a column name, a sequence whose entries are column names (same name in
    the file and in the frame) or ``(canonical, column)`` pairs, or a mapping
    ``{canonical: column}``.
    """
    if isinstance(spec, str):
        spec = (spec,)
    entries = list(spec.items()) if isinstance(spec, Mapping) else list(spec)
    out: list[tuple[str, str]] = []
    for entry in entries:
        if isinstance(entry, str) and entry:
            out.append((entry, entry))
        elif (
            isinstance(entry, (tuple, list))
            and len(entry) == 2
            and all(isinstance(x, str) and x for x in entry)
        ):
            out.append((entry[0], entry[1]))
        else:
            raise TypeError(
                f"{what}: expected a column name or a (canonical, column) pair, got {entry!r}"
            )
    return tuple(out)


def _as_spec(spec: Any) -> Any:
    """Store a spec in an immutable, readable form (strings stay strings)."""
    if isinstance(spec, str):
        return (spec,)
    if isinstance(spec, Mapping):
        return tuple(spec.items())
    return tuple(tuple(e) if isinstance(e, list) else e for e in spec)


@dataclass(frozen=True)
class ItemColumns:
    """Where each canonical item field lives in the file.

    ``item_id`` is the name of the id column. ``text_fields``, ``categorical_fields``
    and ``numeric_fields`` each list columns; an entry is either a column name (kept
    under the same name) or a ``(canonical, column)`` pair, and a ``{canonical: column}``
    mapping works too. Text fields are joined with ". " into the ``text`` column.
    Categorical cells are split on ``categorical_sep`` (JSONL and Parquet may hold real
    lists) into lists of stripped strings; numeric cells must be numbers (an empty cell
    means NaN).
    """

    item_id: str = ITEM_ID
    text_fields: FieldSpec = (TEXT,)
    categorical_fields: FieldSpec = ()
    numeric_fields: FieldSpec = ()
    categorical_sep: str = "|"

    def __post_init__(self) -> None:
        for name in ("text_fields", "categorical_fields", "numeric_fields"):
            object.__setattr__(self, name, _as_spec(getattr(self, name)))
        if not isinstance(self.item_id, str) or not self.item_id:
            raise ValueError("ItemColumns.item_id must be a non-empty column name")
        if not isinstance(self.categorical_sep, str) or not self.categorical_sep:
            raise ValueError("ItemColumns.categorical_sep must be a non-empty string")
        text = self.text_pairs
        if not text:
            raise ValueError("ItemColumns.text_fields must name at least one column")
        canon = [c for c, _ in text + self.categorical_pairs + self.numeric_pairs]
        dup = sorted({c for c in canon if canon.count(c) > 1})
        if dup:
            raise ValueError(f"ItemColumns: canonical field name(s) used twice: {dup}")
        if ITEM_ID in canon:
            raise ValueError(f"ItemColumns: {ITEM_ID!r} is reserved for the id column")
        if TEXT in [c for c, _ in self.categorical_pairs + self.numeric_pairs] or (
            TEXT in [c for c, _ in text] and len(text) > 1
        ):
            # The joined text is stored as "text"; a field of that name would be lost.
            raise ValueError(
                f"ItemColumns: the canonical name {TEXT!r} holds the joined text; name the "
                f"field differently, e.g. ('description', {TEXT!r})"
            )

    @property
    def text_pairs(self) -> tuple[tuple[str, str], ...]:
        return _field_pairs(self.text_fields, "text_fields")

    @property
    def categorical_pairs(self) -> tuple[tuple[str, str], ...]:
        return _field_pairs(self.categorical_fields, "categorical_fields")

    @property
    def numeric_pairs(self) -> tuple[tuple[str, str], ...]:
        return _field_pairs(self.numeric_fields, "numeric_fields")


@dataclass(frozen=True)
class EventColumns:
    """Where each canonical event field lives in the file.

    ``value`` (e.g. a rating) and ``kind`` (e.g. view/purchase) are optional: ``None``
    means the file has no such column (values are then NaN and kinds empty).
    """

    user_id: str = USER_ID
    item_id: str = ITEM_ID
    timestamp: str = TIMESTAMP
    value: str | None = None
    kind: str | None = None

    def __post_init__(self) -> None:
        for name in ("user_id", "item_id", "timestamp"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                raise ValueError(f"EventColumns.{name} must be a non-empty column name")
        for name in ("value", "kind"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, str) or not v):
                raise ValueError(f"EventColumns.{name} must be a column name or None")


# --------------------------------------------------------------------------- issues


@dataclass(frozen=True)
class ValidationIssue:
    """One problem in one place: ``items.csv:14: field 'text': empty text``.

    ``line`` is 1-based; ``unit`` says what it counts: ``"line"`` (CSV/TSV physical
    line, JSONL line) or ``"row"`` (Parquet row). ``line``/``field`` are ``None`` when
    the problem is not tied to one.
    """

    file: str
    line: int | None
    field: str | None
    message: str
    unit: str = "line"

    @property
    def location(self) -> str:
        if self.line is None:
            return self.file
        if self.unit == "line":
            return f"{self.file}:{self.line}"
        return f"{self.file}: {self.unit} {self.line}"

    def __str__(self) -> str:
        where = self.location
        if self.field is not None:
            where += f": field {self.field!r}"
        return f"{where}: {self.message}"


class DataValidationError(ValueError):
    """Raised when input data breaks a rule; ``.issues`` lists every problem found."""

    def __init__(self, issues: Sequence[ValidationIssue], report: "ValidationReport | None" = None):
        self.issues: list[ValidationIssue] = list(issues)
        self.report = report
        super().__init__(self._message())

    def _message(self) -> str:
        n = len(self.issues)
        lines = [f"{n} data problem{'s' if n != 1 else ''} found:"]
        lines += [f"  {issue}" for issue in self.issues[:_MAX_LISTED]]
        if n > _MAX_LISTED:
            lines.append(f"  ... and {n - _MAX_LISTED} more")
        return "\n".join(lines)

    def __reduce__(self):  # keep it picklable (multiprocessing, caching)
        return (type(self), (self.issues, self.report))


@dataclass
class ValidationReport:
    """What a reader saw: every issue, how many data rows it read and how many it kept.

    ``n_rows_read`` counts data records (not the header, not blank lines), malformed
    ones included. A report from :func:`load_dataset` adds up the per-file reports,
    which stay available in ``parts``.
    """

    issues: list[ValidationIssue] = field(default_factory=list)
    n_rows_read: int = 0
    n_rows_kept: int = 0
    files: tuple[str, ...] = ()
    parts: tuple["ValidationReport", ...] = ()

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def n_rows_dropped(self) -> int:
        return self.n_rows_read - self.n_rows_kept

    def summary(self) -> str:
        """One line for logs and the CLI (the library itself never prints)."""
        files = ", ".join(self.files) or "input"
        return (
            f"{files}: read {self.n_rows_read} rows, kept {self.n_rows_kept}, "
            f"{len(self.issues)} issue{'s' if len(self.issues) != 1 else ''}"
        )

    @staticmethod
    def combine(*reports: "ValidationReport") -> "ValidationReport":
        return ValidationReport(
            issues=[i for r in reports for i in r.issues],
            n_rows_read=sum(r.n_rows_read for r in reports),
            n_rows_kept=sum(r.n_rows_kept for r in reports),
            files=tuple(f for r in reports for f in r.files),
            parts=tuple(reports),
        )


# --------------------------------------------------------------------------- reading


def detect_format(path: str | Path, format: str | None = None) -> str:
    """Return ``csv``, ``tsv``, ``jsonl`` or ``parquet`` from ``format`` or the extension."""
    if format is not None:
        fmt = _FORMAT_ALIASES.get(format.lower().lstrip("."), format.lower().lstrip("."))
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {format!r}; expected one of {sorted(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    for fmt, suffixes in FORMATS.items():
        if suffix in suffixes:
            return fmt
    known = ", ".join(s for ss in FORMATS.values() for s in ss)
    raise ValueError(
        f"cannot tell the format of {str(path)!r} from its extension ({known}); pass format="
    )


@dataclass
class _Table:
    """Raw cells of the wanted columns, one list per column, plus where each row is.

    Rows that could not be read at all (malformed JSON, wrong number of CSV fields) are
    not in ``columns``; their issues are in ``issues`` and they count in ``n_read``.
    """

    file: str
    unit: str
    columns: dict[str, list]
    lines: list[int]
    issues: list[ValidationIssue]
    n_read: int


def _open_table(
    path: Path, fmt: str, wanted: list[str], required: list[str], time_columns: tuple[str, ...] = ()
) -> _Table:
    """Read ``wanted`` columns; ``required`` ones must be in the header (CSV, Parquet).

    For JSONL a required key missing from a record is reported per record by the
    validators (the value is ``_MISSING``), because JSONL has no header.
    """
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"expected a file, got a directory: {str(path)!r}")
    if fmt in ("csv", "tsv"):
        table = _read_delimited(path, "," if fmt == "csv" else "\t", wanted, required)
    elif fmt == "jsonl":
        table = _read_jsonl(path, wanted)
    else:
        table = _read_parquet(path, wanted, required, time_columns)
    return table


def _fatal(issues: list[ValidationIssue]) -> NoReturn:
    raise DataValidationError(issues)


def _decode_issue(path: Path, error: UnicodeDecodeError) -> ValidationIssue:
    """Name the line of the first byte that is not UTF-8.

    Text files are decoded in chunks, so the reader's own position says little; this
    rescans the bytes, which only happens once the file is known to be bad.
    """
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return ValidationIssue(str(path), line, None, f"not valid UTF-8 text: {e.reason} at byte {e.start}")
    return ValidationIssue(str(path), None, None, f"not valid UTF-8 text: {error.reason}")


def _read_delimited(path: Path, delimiter: str, wanted: list[str], required: list[str]) -> _Table:
    """Read CSV/TSV with the ``csv`` module so each record's first physical line is known.

    pandas does not report line numbers, and a quoted field may span several lines, so
    the start line of a record is the line after where the previous record ended.
    Every cell stays a string; nothing is coerced here.
    """
    file = str(path)
    issues: list[ValidationIssue] = []
    header: list[str] | None = None
    header_line = 1
    rows: list[list[str]] = []
    lines: list[int] = []
    n_read = 0
    prev = 0
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, delimiter=delimiter)
        try:
            for record in reader:
                start, prev = prev + 1, reader.line_num
                if not record:  # blank line
                    continue
                if header is None:
                    header, header_line = [h.strip() for h in record], start
                    continue
                n_read += 1
                if len(record) != len(header):
                    issues.append(
                        ValidationIssue(
                            file, start, None,
                            f"expected {len(header)} fields (as in the header), found {len(record)}",
                        )
                    )
                    continue
                rows.append(record)
                lines.append(start)
        except csv.Error as e:
            _fatal(issues + [ValidationIssue(file, prev + 1, None, f"CSV syntax error: {e}")])
        except UnicodeDecodeError as e:
            _fatal(issues + [_decode_issue(path, e)])
    if header is None:
        _fatal([ValidationIssue(file, 1, None, "empty file: no header line")])
    assert header is not None
    fatal = [
        ValidationIssue(file, header_line, name, "required column missing from the header")
        for name in required
        if name not in header
    ]
    fatal += [
        ValidationIssue(file, header_line, name, "column appears more than once in the header")
        for name in wanted
        if header.count(name) > 1
    ]
    if fatal:
        _fatal(fatal)
    columns = {}
    for name in wanted:
        if name in header:
            i = header.index(name)
            columns[name] = [r[i] for r in rows]
    return _Table(file, "line", columns, lines, issues, n_read)


def _read_jsonl(path: Path, wanted: list[str]) -> _Table:
    """Parse one JSON object per line with ``json.loads``, so a bad line names itself."""
    file = str(path)
    issues: list[ValidationIssue] = []
    columns: dict[str, list] = {name: [] for name in wanted}
    lines: list[int] = []
    n_read = 0
    loads = json.loads
    try:
        with open(path, encoding="utf-8-sig") as f:
            for lineno, text in enumerate(f, 1):
                if not text.strip():
                    continue
                n_read += 1
                try:
                    obj = loads(text)
                except json.JSONDecodeError as e:
                    issues.append(
                        ValidationIssue(file, lineno, None, f"malformed JSON: {e.msg} (column {e.colno})")
                    )
                    continue
                except (ValueError, RecursionError) as e:  # e.g. an integer with 5000 digits
                    issues.append(ValidationIssue(file, lineno, None, f"malformed JSON: {e}"))
                    continue
                if not isinstance(obj, dict):
                    issues.append(
                        ValidationIssue(file, lineno, None, f"expected a JSON object, got {_kind(obj)}")
                    )
                    continue
                for name, col in columns.items():
                    col.append(obj.get(name, _MISSING))
                lines.append(lineno)
    except UnicodeDecodeError as e:
        _fatal(issues + [_decode_issue(path, e)])
    return _Table(file, "line", columns, lines, issues, n_read)


def _read_parquet(
    path: Path, wanted: list[str], required: list[str], time_columns: tuple[str, ...] = ()
) -> _Table:
    """Read the wanted columns as Python values (nulls stay ``None``, NaN stays NaN).

    Arrow timestamp and date columns among ``time_columns`` become float seconds since
    the epoch directly (Arrow stores instants in UTC; a naive timestamp is read as UTC),
    which is much faster than making a datetime object per row.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    file = str(path)
    try:
        names = pq.read_schema(path).names
    except Exception as e:  # pyarrow raises several types for a non-Parquet file
        _fatal([ValidationIssue(file, None, None, f"cannot read as Parquet: {e}", "row")])
    missing = [
        ValidationIssue(file, None, name, "required column missing", "row")
        for name in required
        if name not in names
    ]
    if missing:
        _fatal(missing)
    present = [n for n in dict.fromkeys(wanted) if n in names]
    table = pq.read_table(path, columns=present)
    columns = {}
    for name in present:
        arr = table.column(name)
        if name in time_columns and pa.types.is_date(arr.type):
            arr = arr.cast(pa.timestamp("s"))
        if name in time_columns and pa.types.is_timestamp(arr.type):
            scale = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[arr.type.unit]
            ticks = arr.cast(pa.int64()).to_pylist()
            columns[name] = [None if t is None else t / scale for t in ticks]
        else:
            columns[name] = arr.to_pylist()
    n = table.num_rows
    return _Table(file, "row", columns, list(range(1, n + 1)), [], n)


# --------------------------------------------------------------------------- cell parsers
# Each parser returns (value, None) or (None, message). They accept what the three
# formats produce: strings (CSV), JSON values (JSONL), Python values from Arrow (Parquet).


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float, np.number)):
        return "a number"
    if isinstance(v, (list, tuple, np.ndarray)):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _parse_id(v: Any, label: str) -> tuple[str | None, str | None]:
    if v is _MISSING:
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
    return None, f"{label} must be a string or an integer, got {_kind(v)} {v!r}"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _parse_timestamp(v: Any) -> tuple[float | None, str | None]:
    """Unix seconds (number or numeric string) or ISO-8601 (naive means UTC)."""
    if v is _MISSING:
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
    return None, f"timestamp must be a number or an ISO-8601 string, got {_kind(v)}"


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


def _parse_number(v: Any) -> tuple[float | None, str | None]:
    """A finite number; empty/null/absent means NaN; "NaN", inf and text are errors."""
    if v is _MISSING or v is None:
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
    return None, f"expected a number, got {_kind(v)}"


def _parse_text(v: Any) -> tuple[str | None, str | None]:
    if v is _MISSING or v is None:
        return "", None
    if isinstance(v, str):
        return v, None
    return None, f"text must be a string, got {_kind(v)} {_short(v)}"


def _parse_categories(v: Any, sep: str) -> tuple[list[str] | None, str | None]:
    if v is _MISSING or v is None:
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
                return None, f"list elements must be strings, got {_kind(x)} {_short(x)}"
        return out, None
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return [str(int(v))], None
    return None, f"expected a {sep!r}-separated string or a list of strings, got {_kind(v)}"


def _parse_kind(v: Any) -> tuple[str | None, str | None]:
    if v is _MISSING or v is None:
        return "", None
    if isinstance(v, str):
        return v.strip(), None
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return str(int(v)), None
    return None, f"kind must be a string, got {_kind(v)}"


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


# Fast paths: plain loops or vectorised conversions for the common clean case (all
# strings from CSV, numbers from JSONL/Parquet); anything unusual goes to the parsers.

_NONE = type(None)


def _types(cells: list) -> set:
    return set(map(type, cells))


def _fast_ids(cells: list, label: str):
    types = _types(cells)
    if types <= {str}:
        values = [v.strip() for v in cells]
        return values, [i for i, v in enumerate(values) if not v]
    if types <= {int}:
        return [str(v) for v in cells], []
    return None


def _fast_text(cells: list):
    if _types(cells) <= {str}:
        return list(cells), []
    return None


def _fast_categories(cells: list, sep: str):
    if _types(cells) <= {str}:
        return [[p.strip() for p in v.split(sep) if p.strip()] for v in cells], []
    return None


def _fast_numbers(cells: list):
    if not _types(cells) <= {str, int, float, _NONE}:
        return None
    try:
        arr = pd.to_numeric(pd.Series(cells, dtype=object), errors="coerce").to_numpy(dtype="float64")
    except (OverflowError, ValueError, TypeError):  # e.g. a JSON integer beyond float range
        return None
    return arr.tolist(), np.flatnonzero(~np.isfinite(arr)).tolist()


def _fast_timestamps(cells: list):
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


# --------------------------------------------------------------------------- validation


class _Collector:
    """Gathers issues per row of a table and remembers which rows are bad."""

    def __init__(self, table: _Table):
        self.table = table
        self.bad = np.zeros(len(table.lines), dtype=bool)
        self._row_issues: list[tuple[int, int, ValidationIssue]] = []

    def add(self, row: int, field: str | None, message: str) -> None:
        t = self.table
        self.bad[row] = True
        issue = ValidationIssue(t.file, t.lines[row], field, message, t.unit)
        self._row_issues.append((t.lines[row], len(self._row_issues), issue))

    def parse(self, column: str, parser, *args, fast=None) -> list:
        """Run ``parser`` over a column; failed cells are reported and become ``None``.

        ``fast`` (optional) converts a whole clean column at once and returns
        ``(values, rows to redo)`` or ``None``; only the rows it could not settle go
        through ``parser``, which stays the one authority on what is valid.
        """
        cells = self.table.columns[column]
        result = fast(cells, *args) if fast is not None else None
        if result is None:
            values, redo = [None] * len(cells), range(len(cells))
        else:
            values, redo = result
        for row in redo:
            out, err = parser(cells[row], *args)
            if err is not None:
                self.add(row, column, err)
            values[row] = out
        return values

    def issues(self) -> list[ValidationIssue]:
        pre = [(i.line or 0, -1, i) for i in self.table.issues]
        return [i for _, _, i in sorted(pre + self._row_issues, key=lambda t: (t[0], t[1]))]

    def report(self, n_kept: int) -> ValidationReport:
        return ValidationReport(self.issues(), self.table.n_read, n_kept, (self.table.file,))


def _finish(col: _Collector, strict: bool, n_kept: int) -> ValidationReport:
    report = col.report(n_kept)
    if strict and report.issues:
        raise DataValidationError(report.issues, report)
    return report


def _kept_rows(bad: np.ndarray) -> list[int] | None:
    """Positions of the good rows, or ``None`` when every row is good."""
    return None if not bad.any() else np.flatnonzero(~bad).tolist()


def _take(values: list, keep: list[int] | None) -> list:
    return values if keep is None else [values[i] for i in keep]


def _id_keys(ids: list[str]) -> list[int | str]:
    """Comparison keys matching how ``normalize_ids`` will store the ids.

    Ids that look like integers compare as integers ("7" and "007" are one item once
    loaded); the test is the same vectorised match ``normalize_ids`` uses.
    """
    if not ids:
        return []
    is_int = pd.Series(ids, dtype=object).astype(str).str.fullmatch(_INT_ID.pattern)
    return [int(v) if m else v for v, m in zip(ids, is_int.to_numpy(dtype=bool))]


def _join_texts(columns: list[list]) -> list[str]:
    """Join text fields like ``schema.join_text_fields``: stripped, non-empty, ". "."""
    if len(columns) == 1:
        return [v.strip() if isinstance(v, str) else "" for v in columns[0]]
    return [
        ". ".join(p for p in (v.strip() for v in row if isinstance(v, str)) if p)
        for row in zip(*columns)
    ]


def read_items(
    path: str | Path,
    columns: ItemColumns = ItemColumns(),
    *,
    strict: bool = True,
    format: str | None = None,
) -> tuple[Items, ValidationReport]:
    """Read and check an item catalogue; return the :class:`Items` and a report.

    Checks, each reported with file, line and field: required columns present; item id
    present and non-empty; item ids unique (a later duplicate is reported with the line
    of the first; ids equal as integers, like "7" and "007", count as duplicates since
    they load as the same id); text fields are strings and their joined text is not
    empty (one empty field among several is fine); categorical cells are strings or
    lists; numeric cells are finite numbers (empty means NaN).

    ``strict=True`` raises :class:`DataValidationError` listing every issue;
    ``strict=False`` leaves bad rows out and lists them in the report.
    """
    path = Path(path)
    fmt = detect_format(path, format)
    text_pairs = columns.text_pairs
    cat_pairs = columns.categorical_pairs
    num_pairs = columns.numeric_pairs
    wanted = list(
        dict.fromkeys([columns.item_id] + [c for _, c in text_pairs + cat_pairs + num_pairs])
    )
    table = _open_table(path, fmt, wanted, wanted)
    col = _Collector(table)

    ids = col.parse(columns.item_id, _parse_id, "item id", fast=_fast_ids)

    texts: dict[str, list] = {}
    for canon, column in text_pairs:
        texts[canon] = col.parse(column, _parse_text, fast=_fast_text)
    text_bad = col.bad.copy()  # rows with a non-string text field: already reported
    text_columns = [table.columns[c] for _, c in text_pairs]
    text_field_name = ", ".join(c for _, c in text_pairs)
    joined = _join_texts([texts[canon] for canon, _ in text_pairs])
    for row in [i for i, t in enumerate(joined) if not t and not text_bad[i]]:
        raw = [c[row] for c in text_columns]
        if all(v is _MISSING for v in raw):
            msg = "key missing from this record"
        elif len(raw) > 1:
            msg = "empty text (every text field is empty)"
        elif raw[0] is None:
            msg = "missing text"
        elif raw[0] == "":
            msg = "empty text"
        else:
            msg = "whitespace-only text"
        col.add(row, text_field_name, msg)

    cats = {
        canon: col.parse(column, _parse_categories, columns.categorical_sep, fast=_fast_categories)
        for canon, column in cat_pairs
    }
    nums = {canon: col.parse(column, _parse_number, fast=_fast_numbers) for canon, column in num_pairs}

    first_seen: dict[int | str, tuple[int, str]] = {}
    unit = table.unit
    valid = [row for row, v in enumerate(ids) if v is not None]
    for row, key in zip(valid, _id_keys([ids[r] for r in valid])):
        seen = first_seen.setdefault(key, (table.lines[row], ids[row]))
        if seen[0] != table.lines[row]:
            first_line, first_raw = seen
            as_ = "" if first_raw == ids[row] else f" (as {first_raw!r})"
            col.add(
                row, columns.item_id,
                f"duplicate item id {ids[row]!r}; first on {unit} {first_line}{as_}",
            )

    keep = _kept_rows(col.bad)
    data: dict[str, Any] = {ITEM_ID: _take(ids, keep)}
    for canon, _ in text_pairs:
        data[canon] = _take(texts[canon], keep)
    data[TEXT] = _take(joined, keep)
    for canon, _ in cat_pairs:
        data[canon] = _take(cats[canon], keep)
    for canon, _ in num_pairs:
        data[canon] = np.asarray(_take(nums[canon], keep), dtype="float64")
    report = _finish(col, strict, len(data[ITEM_ID]))
    items = Items.from_frame(
        pd.DataFrame(data),
        text_fields=tuple(c for c, _ in text_pairs),
        categorical_fields=tuple(c for c, _ in cat_pairs),
        numeric_fields=tuple(c for c, _ in num_pairs),
    )
    return items, report


def read_events(
    path: str | Path,
    items: Items,
    columns: EventColumns = EventColumns(),
    *,
    strict: bool = True,
    format: str | None = None,
) -> tuple[Events, ValidationReport]:
    """Read and check an event log against the catalogue ``items``.

    Checks, each reported with file, line and field: required columns present; user
    and item ids present and non-empty; every item id is in the catalogue (ids are
    converted to the catalogue's id type first, so "007" matches item 7); timestamps
    present and either Unix seconds or ISO-8601 (naive means UTC), never NaN or
    infinite; values, when mapped, finite numbers (empty means NaN); kinds strings.

    ``strict=True`` raises :class:`DataValidationError` listing every issue;
    ``strict=False`` leaves bad rows out and lists them in the report.
    """
    if not isinstance(items, Items):
        raise TypeError(f"items must be an Items catalogue, got {type(items).__name__}")
    path = Path(path)
    fmt = detect_format(path, format)
    required = [columns.user_id, columns.item_id, columns.timestamp]
    optional = [c for c in (columns.value, columns.kind) if c is not None]
    wanted = list(dict.fromkeys(required + optional))
    table = _open_table(path, fmt, wanted, wanted, time_columns=(columns.timestamp,))
    col = _Collector(table)

    users = col.parse(columns.user_id, _parse_id, "user id", fast=_fast_ids)
    item_ids = col.parse(columns.item_id, _parse_id, "item id", fast=_fast_ids)
    stamps = col.parse(columns.timestamp, _parse_timestamp, fast=_fast_timestamps)
    values = col.parse(columns.value, _parse_number, fast=_fast_numbers) if columns.value is not None else None
    kinds = col.parse(columns.kind, _parse_kind) if columns.kind is not None else None

    # Unknown items: convert ids to the catalogue's type, then look them up.
    reference = items.frame[ITEM_ID]
    have_id = [row for row, v in enumerate(item_ids) if v is not None]
    coerced = coerce_ids_like(
        pd.Series([item_ids[r] for r in have_id], dtype=object), reference
    ).tolist()
    unconvertible = [pos for pos, v in enumerate(coerced) if v is None or v != v]
    if unconvertible:
        # Re-convert only the convertible ids: with some ids unconvertible, the
        # conversion can fall back to floats and lose precision on large integer ids.
        skip = set(unconvertible)
        positions = [pos for pos in range(len(have_id)) if pos not in skip]
        good = coerce_ids_like(
            pd.Series([item_ids[have_id[pos]] for pos in positions], dtype=object), reference
        ).tolist()
        coerced = [None] * len(have_id)
        for pos, v in zip(positions, good):
            coerced[pos] = v
    catalogue = set(reference.tolist())
    event_items: list = [None] * len(item_ids)
    for pos, row in enumerate(have_id):
        v = coerced[pos]
        if v is not None and v in catalogue:
            event_items[row] = v
        else:
            col.add(row, columns.item_id, f"unknown item id {item_ids[row]!r} (not in the catalogue)")

    keep = _kept_rows(col.bad)
    item_col = pd.Series(_take(event_items, keep), dtype=object)
    if pd.api.types.is_integer_dtype(reference.dtype):
        item_col = item_col.astype(reference.dtype)
    data: dict[str, Any] = {
        USER_ID: pd.Series(_take(users, keep), dtype=object),
        ITEM_ID: item_col,
        TIMESTAMP: np.asarray(_take(stamps, keep), dtype="float64"),
    }
    if values is not None:
        data[VALUE] = np.asarray(_take(values, keep), dtype="float64")
    if kinds is not None:
        data[KIND] = pd.Series(_take(kinds, keep), dtype=object)
    report = _finish(col, strict, len(data[ITEM_ID]))
    return Events.from_frame(pd.DataFrame(data)), report


def load_dataset(
    items_path: str | Path,
    events_path: str | Path,
    item_columns: ItemColumns = ItemColumns(),
    event_columns: EventColumns = EventColumns(),
    *,
    strict: bool = True,
    name: str | None = None,
    items_format: str | None = None,
    events_format: str | None = None,
) -> tuple[Dataset, ValidationReport]:
    """Read a catalogue and its events into a :class:`Dataset`, checking both files.

    Both files are checked before anything is raised, so one ``DataValidationError``
    lists the problems of both. Events are checked against the catalogue as loaded: an
    event naming an item whose row was rejected is reported as an unknown item. The
    report adds up both files (``parts`` holds each file's own report).
    """
    items, items_report = read_items(items_path, item_columns, strict=False, format=items_format)
    events, events_report = read_events(
        events_path, items, event_columns, strict=False, format=events_format
    )
    report = ValidationReport.combine(items_report, events_report)
    if strict and report.issues:
        raise DataValidationError(report.issues, report)
    return Dataset(items, events, name=name or "dataset"), report
