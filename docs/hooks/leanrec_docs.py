"""MkDocs hooks: figures come from ``benchmarks/results``, the configuration table from the code.

Two directives, each on a line of its own in a page's Markdown:

* ``<!-- results: FILE [section="HEADING"] [level=N] -->`` — replaced by the Markdown a
  benchmark wrote next to its JSON (``benchmarks/results/FILE``), headings shifted so the
  file's top heading becomes level ``N`` (default 3); ``section`` keeps only the section
  under the heading whose text is HEADING. A missing file or section stops the build, so a
  renamed result cannot leave a page quoting stale numbers.
* ``<!-- config-reference -->`` — replaced by the table of every
  :class:`leanrec.service.config.ServiceConfig` field (name, type, default and the comment
  beside it in the source), so the reference cannot drift from the class.

The same functions are used by ``tests/test_docs.py``.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DIRECTIVE = re.compile(r"^<!--\s*results:\s*(?P<file>\S+)(?P<opts>[^>]*?)\s*-->\s*$", re.M)
OPTION = re.compile(r'(\w+)=(?:"([^"]*)"|(\S+))')
CONFIG = re.compile(r"^<!--\s*config-reference\s*-->\s*$", re.M)
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")


class DocsError(ValueError):
    """A directive that cannot be honoured; the message names the page and the line."""


def _headings(lines: list[str]) -> list[tuple[int, int, str]]:
    """(line index, level, text) of every ATX heading outside code fences."""
    out, fenced = [], False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (m := HEADING.match(line)):
            out.append((i, len(m.group(1)), m.group(2)))
    return out


def results_block(name: str, section: str | None = None, level: int = 3, *, root: Path = RESULTS) -> str:
    """The Markdown of one results file (or one section of it), headings shifted to ``level``."""
    path = (root / name).resolve()
    if root.resolve() not in path.parents or path.suffix != ".md":
        raise DocsError(f"results file must be a .md under benchmarks/results, got {name!r}")
    if not path.is_file():
        raise DocsError(f"no results file benchmarks/results/{name} (run its benchmark to write it)")
    lines = path.read_text(encoding="utf-8").splitlines()
    heads = _headings(lines)
    if section is not None:
        found = [h for h in heads if h[2] == section]
        if not found:
            raise DocsError(f"benchmarks/results/{name} has no section {section!r}; "
                            f"headings: {[h[2] for h in heads]}")
        start, lvl, _ = found[0]
        end = next((i for i, l2, _ in heads if i > start and l2 <= lvl), len(lines))
        lines = lines[start:end]
        heads = _headings(lines)
    if heads:
        shift = level - min(h[1] for h in heads)
        for i, lvl, text in heads:
            lines[i] = "#" * max(1, min(6, lvl + shift)) + " " + text
    return "\n".join(lines).strip() + "\n"


def _options(raw: str, where: str) -> dict:
    opts = {}
    for key, quoted, bare in OPTION.findall(raw):
        if key not in ("section", "level"):
            raise DocsError(f"{where}: unknown results option {key!r} (section, level)")
        opts[key] = quoted if quoted or not bare else bare
    leftover = OPTION.sub("", raw).strip()
    if leftover:
        raise DocsError(f"{where}: cannot read results options {raw.strip()!r}")
    if "level" in opts:
        if not str(opts["level"]).isdigit() or not 1 <= int(opts["level"]) <= 6:
            raise DocsError(f"{where}: level must be 1..6, got {opts['level']!r}")
        opts["level"] = int(opts["level"])
    return opts


def _field_comments(cls) -> dict[str, str]:
    """The ``# comment`` after each field of a dataclass in its source, by field name."""
    import inspect

    source = inspect.getsource(cls)
    comments, by_line = {}, {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            by_line[tok.start[0]] = tok.string.lstrip("#").strip()
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.lineno in by_line:
            comments[node.target.id] = by_line[node.lineno]
    return comments


def config_reference() -> str:
    """A Markdown table of every ServiceConfig field: the ``[service]`` TOML key and flag."""
    from leanrec.service.config import ServiceConfig

    comments = _field_comments(ServiceConfig)
    rows = ["| key (`[service]` in TOML) | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(ServiceConfig):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = repr(f.default_factory())  # type: ignore[misc]
        else:
            default = "required"
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        text = comments.get(f.name, "").replace("|", "\\|")
        rows.append(f"| `{f.name}` | `{kind}` | `{default}` | {text} |")
    return "\n".join(rows) + "\n"


def expand(markdown: str, where: str = "page") -> str:
    """Apply both directives to one page's Markdown (code fences left alone)."""
    out, fenced = [], False
    for n, line in enumerate(markdown.split("\n"), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and (m := DIRECTIVE.match(line)):
            opts = _options(m.group("opts"), f"{where}:{n}")
            try:
                out.append(results_block(m.group("file"), opts.get("section"), opts.get("level", 3)))
            except DocsError as exc:
                raise DocsError(f"{where}:{n}: {exc}") from None
        elif not fenced and CONFIG.match(line):
            out.append(config_reference())
        else:
            out.append(line)
    return "\n".join(out)


def on_page_markdown(markdown, page, config, files):  # MkDocs hook
    return expand(markdown, page.file.src_path)
