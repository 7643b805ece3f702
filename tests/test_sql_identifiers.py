"""No identifier enters an SQL string unquoted: table and index names go through the dialect's
identifier quoting (``store.base.ident``, or psycopg's ``sql.Identifier`` on a raw cursor),
numbers through ``:d`` formatting, values through bound parameters."""

import ast
import re
from pathlib import Path

import leanrec.service

SERVICE = Path(leanrec.service.__file__).parent
SQL_START = re.compile(r"^(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|ANALYZE|COPY|SET|WITH)\b")


def _unsafe_fields(node: ast.JoinedStr) -> list[str]:
    """The f-string's placeholders that are neither ident(...) nor an integer format."""
    bad = []
    for part in node.values:
        if isinstance(part, ast.FormattedValue):
            call = part.value
            quoted = isinstance(call, ast.Call) and getattr(call.func, "id", None) == "ident"
            integer = part.format_spec is not None and ast.unparse(part.format_spec).strip("'\"f").endswith("d")
            if not (quoted or integer):
                bad.append(ast.unparse(part.value))
    return bad


def test_sql_strings_quote_every_identifier():
    offenders = []
    for path in SERVICE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                head = "".join(p.value for p in node.values if isinstance(p, ast.Constant)).lstrip().upper()
                if SQL_START.match(head):
                    offenders += [f"{path.relative_to(SERVICE)}:{node.lineno}: {{{b}}}" for b in _unsafe_fields(node)]
    assert not offenders, "identifiers formatted into SQL without ident():\n" + "\n".join(offenders)
