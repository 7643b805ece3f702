"""The rules every item and event row must pass, applied across a table of raw cells.

Why this module exists: every later stage (splits, encoders, models, evaluation) trusts
the invariants of :class:`~leanrec.data.schema.Items` and
:class:`~leanrec.data.schema.Events`. A bad row that slips through surfaces much later as
a confusing error or, worse, as a silently wrong metric. So the readers check every row
*once*, at the border, and say exactly where each problem is: the file, the line (the
physical line of a CSV record, the line of a JSONL record, the row of a Parquet table)
and the field. They collect every problem instead of stopping at the first, so one run
is enough to fix a file.

This module holds what that needs, independent of any file format: the cell rules (ids,
text, categories, numbers, timestamps, kinds; each cell checked by a parser of
:mod:`leanrec.data.cells`) and the rules across rows (non-empty joined text, unique item
ids, events naming known items), applied by a :class:`Collector` over a table of raw
cells from :mod:`leanrec.data.formats`; the problems it finds are reported with the
types of :mod:`leanrec.data.issues`. Nothing is coerced silently: every conversion is
checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .cells import (
    MISSING,
    fast_categories,
    fast_ids,
    fast_numbers,
    fast_text,
    fast_timestamps,
    parse_categories,
    parse_id,
    parse_kind,
    parse_number,
    parse_text,
    parse_timestamp,
)
from .issues import DataValidationError, ValidationIssue, ValidationReport
from .schema import coerce_ids_like

if TYPE_CHECKING:
    from .formats import Table

__all__ = ["Collector"]

# Same integer pattern as ``schema.normalize_ids``: ids that match it are compared as
# integers, so "007" and "7" are the same item once loaded.
_INT_ID = r"[+-]?\d{1,18}"


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
        return self.parse(column, parse_id, label, fast=fast_ids)

    def timestamps(self, column: str) -> list:
        return self.parse(column, parse_timestamp, fast=fast_timestamps)

    def numbers(self, column: str) -> list:
        return self.parse(column, parse_number, fast=fast_numbers)

    def categories(self, column: str, sep: str) -> list:
        return self.parse(column, parse_categories, sep, fast=fast_categories)

    def kinds(self, column: str) -> list:
        return self.parse(column, parse_kind)

    # Rules across columns and rows.

    def texts(self, pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, list], list[str]]:
        """Check the text fields (``(canonical, column)`` pairs) and their joined text.

        Returns each field's values by canonical name and the joined text per row. A
        row whose joined text is empty is reported once, unless it is already bad.
        """
        texts = {canon: self.parse(column, parse_text, fast=fast_text) for canon, column in pairs}
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
