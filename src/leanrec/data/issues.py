"""How a broken row is reported: one issue per problem, a report per file, one error for all.

Why this module exists: the readers say exactly where each problem is (the file, the
line or row, the field) and collect every problem instead of stopping at the first, so
one run is enough to fix a file. These are the types that carry that: a
:class:`ValidationIssue` per problem, a :class:`ValidationReport` per read, and the
:class:`DataValidationError` that strict reads raise with every issue in it. They know
nothing of file formats or of the rules (:mod:`leanrec.data.validation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["DataValidationError", "ValidationIssue", "ValidationReport"]

_MAX_LISTED = 20


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
