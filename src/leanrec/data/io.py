"""Read item catalogues and event logs from CSV, TSV, JSONL and Parquet files.

Why this module exists: it is the public entry point for user files. It says which
column of a file holds each canonical field (:class:`ItemColumns`,
:class:`EventColumns`), so files from any source load without renaming, and it turns a
file into checked :class:`~leanrec.data.schema.Items`, :class:`~leanrec.data.schema.Events`
or a whole :class:`~leanrec.data.schema.Dataset`. The work is delegated: reading raw
records with their line numbers lives in :mod:`leanrec.data.formats`, the rules in
:mod:`leanrec.data.validation` and the report types in :mod:`leanrec.data.issues`
(re-exported here).

Two modes:

* ``strict=True`` (the default): any problem raises :class:`DataValidationError`, which
  carries every :class:`ValidationIssue` found.
* ``strict=False``: bad rows are left out and each one is listed in the returned
  :class:`ValidationReport`; nothing is dropped silently.

Problems with the file as a whole (a required column missing from the header, an empty
or unreadable file) leave no row usable, so they raise :class:`DataValidationError` in
both modes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .formats import FORMATS, detect_format, open_table
from .issues import DataValidationError, ValidationIssue, ValidationReport
from .schema import ITEM_ID, KIND, TEXT, TIMESTAMP, USER_ID, VALUE, Dataset, Events, Items
from .validation import Collector

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



# --------------------------------------------------------------------------- readers


def _take(values: list, keep: list[int] | None) -> list:
    return values if keep is None else [values[i] for i in keep]


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
    col = Collector(open_table(path, fmt, wanted))

    ids = col.ids(columns.item_id, "item id")
    texts, joined = col.texts(text_pairs)
    cats = {canon: col.categories(column, columns.categorical_sep) for canon, column in cat_pairs}
    nums = {canon: col.numbers(column) for canon, column in num_pairs}
    col.unique_item_ids(ids, columns.item_id)

    keep = col.kept_rows()
    data: dict[str, Any] = {ITEM_ID: _take(ids, keep)}
    for canon, _ in text_pairs:
        data[canon] = _take(texts[canon], keep)
    data[TEXT] = _take(joined, keep)
    for canon, _ in cat_pairs:
        data[canon] = _take(cats[canon], keep)
    for canon, _ in num_pairs:
        data[canon] = np.asarray(_take(nums[canon], keep), dtype="float64")
    report = col.finish(strict, len(data[ITEM_ID]))
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
    mapped = [columns.user_id, columns.item_id, columns.timestamp, columns.value, columns.kind]
    wanted = list(dict.fromkeys(c for c in mapped if c is not None))
    col = Collector(open_table(path, fmt, wanted, time_columns=(columns.timestamp,)))

    users = col.ids(columns.user_id, "user id")
    item_ids = col.ids(columns.item_id, "item id")
    stamps = col.timestamps(columns.timestamp)
    values = col.numbers(columns.value) if columns.value is not None else None
    kinds = col.kinds(columns.kind) if columns.kind is not None else None
    reference = items.frame[ITEM_ID]
    event_items = col.known_items(item_ids, reference, columns.item_id)

    keep = col.kept_rows()
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
    report = col.finish(strict, len(data[ITEM_ID]))
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
