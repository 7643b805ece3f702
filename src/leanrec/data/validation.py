"""The rules every item and event row must pass, and how broken ones are reported.

Why this module exists: every later stage (splits, encoders, models, evaluation) trusts
the invariants of :class:`~leanrec.data.schema.Items` and
:class:`~leanrec.data.schema.Events`. A bad row that slips through surfaces much later as
a confusing error or, worse, as a silently wrong metric. So the readers check every row
*once*, at the border, and say exactly where each problem is: the file, the line (the
physical line of a CSV record, the line of a JSONL record, the row of a Parquet table)
and the field. They collect every problem instead of stopping at the first, so one run
is enough to fix a file.

This module holds what that needs, independent of any file format: the report types
(:class:`ValidationIssue`, :class:`ValidationReport`, :class:`DataValidationError`),
the cell rules (ids, text, categories, numbers, timestamps, kinds) and the rules across
rows (non-empty joined text, unique item ids, events naming known items), applied by a
:class:`Collector` over a table of raw cells from :mod:`leanrec.data.formats`. Nothing
is coerced silently: every conversion is checked here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .schema import coerce_ids_like

if TYPE_CHECKING:
    from .formats import Table

__all__ = [
    "ValidationIssue",
    "ValidationReport",
    "DataValidationError",
    "MISSING",
    "Collector",
    "describe_type",
]

#: Marks a key that a JSONL record does not have (as opposed to an explicit null).
MISSING: Any = type("_Missing", (), {"__repr__": lambda self: "<missing>"})()

# Same integer pattern as ``schema.normalize_ids``: ids that match it are compared as
# integers, so "007" and "7" are the same item once loaded.
_INT_ID = r"[+-]?\d{1,18}"

_MAX_LISTED = 20


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



# --------------------------------------------------------------------------- cell parsers
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


def _parse_id(v: Any, label: str) -> tuple[str | None, str | None]:
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


def _parse_timestamp(v: Any) -> tuple[float | None, str | None]:
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


def _parse_number(v: Any) -> tuple[float | None, str | None]:
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


def _parse_text(v: Any) -> tuple[str | None, str | None]:
    if v is MISSING or v is None:
        return "", None
    if isinstance(v, str):
        return v, None
    return None, f"text must be a string, got {describe_type(v)} {_short(v)}"


def _parse_categories(v: Any, sep: str) -> tuple[list[str] | None, str | None]:
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


def _parse_kind(v: Any) -> tuple[str | None, str | None]:
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



# --------------------------------------------------------------------------- rules


class Collector:
    """Applies the rules to the rows of a table, gathering issues and the bad rows.

    Each rule method reports failures against the row's line and the field, marks the
    row bad in ``bad``, and returns one value per row (``None`` where the cell failed).
    """

    def __init__(self, table: Table):
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

    # Cell rules, one column each.

    def ids(self, column: str, label: str) -> list:
        return self.parse(column, _parse_id, label, fast=_fast_ids)

    def timestamps(self, column: str) -> list:
        return self.parse(column, _parse_timestamp, fast=_fast_timestamps)

    def numbers(self, column: str) -> list:
        return self.parse(column, _parse_number, fast=_fast_numbers)

    def categories(self, column: str, sep: str) -> list:
        return self.parse(column, _parse_categories, sep, fast=_fast_categories)

    def kinds(self, column: str) -> list:
        return self.parse(column, _parse_kind)

    # Rules across columns and rows.

    def texts(self, pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, list], list[str]]:
        """Check the text fields (``(canonical, column)`` pairs) and their joined text.

        Returns each field's values by canonical name and the joined text per row. A
        row whose joined text is empty is reported once, unless it is already bad.
        """
        texts = {canon: self.parse(column, _parse_text, fast=_fast_text) for canon, column in pairs}
        already_bad = self.bad.copy()  # e.g. a non-string text field: already reported
        raw_columns = [self.table.columns[c] for _, c in pairs]
        field_name = ", ".join(c for _, c in pairs)
        joined = _join_texts([texts[canon] for canon, _ in pairs])
        for row in [i for i, t in enumerate(joined) if not t and not already_bad[i]]:
            raw = [c[row] for c in raw_columns]
            if all(v is MISSING for v in raw):
                msg = "key missing from this record"
            elif len(raw) > 1:
                msg = "empty text (every text field is empty)"
            elif raw[0] is None:
                msg = "missing text"
            elif raw[0] == "":
                msg = "empty text"
            else:
                msg = "whitespace-only text"
            self.add(row, field_name, msg)
        return texts, joined

    def unique_item_ids(self, ids: list, column: str) -> None:
        """Report every repeat of an item id with the line of its first occurrence.

        Ids equal as integers ("7" and "007") are duplicates: they load as one id.
        """
        lines, unit = self.table.lines, self.table.unit
        first_seen: dict[int | str, tuple[int, str]] = {}
        valid = [row for row, v in enumerate(ids) if v is not None]
        for row, key in zip(valid, _id_keys([ids[r] for r in valid])):
            seen = first_seen.setdefault(key, (lines[row], ids[row]))
            if seen[0] != lines[row]:
                first_line, first_raw = seen
                as_ = "" if first_raw == ids[row] else f" (as {first_raw!r})"
                self.add(
                    row, column,
                    f"duplicate item id {ids[row]!r}; first on {unit} {first_line}{as_}",
                )

    def known_items(self, item_ids: list, reference: pd.Series, column: str) -> list:
        """Convert item ids to the catalogue's id type (``reference``) and look them up.

        Returns the converted ids (``None`` for missing or unknown ones); unknown ids
        are reported.
        """
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
        out: list = [None] * len(item_ids)
        for pos, row in enumerate(have_id):
            v = coerced[pos]
            if v is not None and v in catalogue:
                out[row] = v
            else:
                self.add(row, column, f"unknown item id {item_ids[row]!r} (not in the catalogue)")
        return out

    # Outcome.

    def kept_rows(self) -> list[int] | None:
        """Positions of the good rows, or ``None`` when every row is good."""
        return None if not self.bad.any() else np.flatnonzero(~self.bad).tolist()

    def issues(self) -> list[ValidationIssue]:
        """Every issue of the file, the readers' own first, in line order."""
        pre = [(i.line or 0, -1, i) for i in self.table.issues]
        return [i for _, _, i in sorted(pre + self._row_issues, key=lambda t: (t[0], t[1]))]

    def finish(self, strict: bool, n_kept: int) -> ValidationReport:
        """The file's report; with ``strict``, raise if it has any issue."""
        report = ValidationReport(self.issues(), self.table.n_read, n_kept, (self.table.file,))
        if strict and report.issues:
            raise DataValidationError(report.issues, report)
        return report


def _id_keys(ids: list[str]) -> list[int | str]:
    """Comparison keys matching how ``normalize_ids`` will store the ids.

    Ids that look like integers compare as integers ("7" and "007" are one item once
    loaded); the test is the same vectorised match ``normalize_ids`` uses.
    """
    if not ids:
        return []
    is_int = pd.Series(ids, dtype=object).astype(str).str.fullmatch(_INT_ID)
    return [int(v) if m else v for v, m in zip(ids, is_int.to_numpy(dtype=bool))]


def _join_texts(columns: list[list]) -> list[str]:
    """Join text fields like ``schema.join_text_fields``: stripped, non-empty, ". "."""
    if len(columns) == 1:
        return [v.strip() if isinstance(v, str) else "" for v in columns[0]]
    return [
        ". ".join(p for p in (v.strip() for v in row if isinstance(v, str)) if p)
        for row in zip(*columns)
    ]
