"""Detect a file's format and read its raw records, each with the line it came from.

Why this module exists: validation can only say *where* a problem is if the reader
keeps the position of every record, and no off-the-shelf reader does that for all our
formats (pandas reports no line numbers, and a quoted CSV field may span several
lines). This module is the one place that knows about file formats: it turns a CSV,
TSV, JSONL or Parquet file into a :class:`Table` of raw cells plus line (or row)
numbers. It converts nothing; checking the cells is the job of
:mod:`leanrec.data.validation`. Problems with the file as a whole (missing or
duplicated header columns, an empty, non-UTF-8 or unreadable file) raise
:class:`~leanrec.data.issues.DataValidationError` here, since no row is usable.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from .cells import MISSING, describe_type
from .issues import DataValidationError, ValidationIssue

__all__ = ["FORMATS", "Table", "detect_format", "open_table", "parquet_files"]

#: Supported formats and the file extensions that select them.
FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv",),
    "tsv": (".tsv", ".tab"),
    "jsonl": (".jsonl", ".ndjson"),
    "parquet": (".parquet", ".pq"),
}
_FORMAT_ALIASES = {"ndjson": "jsonl", "pq": "parquet", "tab": "tsv"}


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


def parquet_files(path: Path, what: str = "items") -> list[Path]:
    """The Parquet file, or the sorted ``*.parquet`` files under a folder (hidden ones skipped).

    One rule for what a catalogue or event folder holds, shared by the batch encode job
    (:mod:`leanrec.scale.encode`) and the service's bulk load of its output
    (:mod:`leanrec.service.bulk_load`): both must see the same files. ``what`` names the
    input in the error."""
    if not path.exists():
        raise FileNotFoundError(f"{what} file or folder {path} does not exist")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"{path} holds no *.parquet files")
        return files
    return [path]


@dataclass
class Table:
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


def open_table(path: Path, fmt: str, columns: list[str], time_columns: tuple[str, ...] = ()) -> Table:
    """Read ``columns``, each of which must be in the header (CSV, Parquet).

    For JSONL a key missing from a record is reported per record by the validators (the
    value is ``MISSING``), because JSONL has no header. ``time_columns`` only matter for
    Parquet (see :func:`_read_parquet`).
    """
    if not path.exists():
        raise FileNotFoundError(f"no such file: {str(path)!r}")
    if path.is_dir():
        raise IsADirectoryError(f"expected a file, got a directory: {str(path)!r}")
    if fmt in ("csv", "tsv"):
        return _read_delimited(path, "," if fmt == "csv" else "\t", columns)
    if fmt == "jsonl":
        return _read_jsonl(path, columns)
    return _read_parquet(path, columns, time_columns)


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


def _read_delimited(path: Path, delimiter: str, wanted: list[str]) -> Table:
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
    fatal = [
        ValidationIssue(file, header_line, name, "required column missing from the header")
        for name in wanted
        if name not in header
    ]
    fatal += [
        ValidationIssue(file, header_line, name, "column appears more than once in the header")
        for name in wanted
        if header.count(name) > 1
    ]
    if fatal:
        _fatal(fatal)
    columns = {name: [r[header.index(name)] for r in rows] for name in wanted}
    return Table(file, "line", columns, lines, issues, n_read)


def _read_jsonl(path: Path, wanted: list[str]) -> Table:
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
                        ValidationIssue(file, lineno, None, f"expected a JSON object, got {describe_type(obj)}")
                    )
                    continue
                for name, col in columns.items():
                    col.append(obj.get(name, MISSING))
                lines.append(lineno)
    except UnicodeDecodeError as e:
        _fatal(issues + [_decode_issue(path, e)])
    return Table(file, "line", columns, lines, issues, n_read)


def _read_parquet(path: Path, wanted: list[str], time_columns: tuple[str, ...]) -> Table:
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
        for name in wanted
        if name not in names
    ]
    if missing:
        _fatal(missing)
    table = pq.read_table(path, columns=wanted)
    columns = {}
    for name in wanted:
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
    return Table(file, "row", columns, list(range(1, n + 1)), [], n)

