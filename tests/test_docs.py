"""The documentation: it builds strictly, its figures come from results, its commands work.

* every ``leanrec ...`` command line in a bash block of the README or docs/ is parsed against
  the real CLI (a renamed command or option fails here, not for the user);
* the runnable bash and Python blocks of each page run, in order, in a fresh folder
  (``<!-- docs-test: skip REASON -->`` on the line before a fence skips one, with its reason);
* ``mkdocs build --strict`` succeeds, generated API reference and results tables included;
* the README stays a front door (line budget) with its headline tables generated from results;
* neither README nor docs speak of the project's work items ("issue" only for data problems).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts)
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\s+(?P<reason>\S.*?)\s*-->\s*$")
RUNNABLE = ("bash", "python")


def _hooks():
    spec = importlib.util.spec_from_file_location("leanrec_docs_hooks", DOCS / "hooks" / "leanrec_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@dataclass
class Block:
    page: Path
    line: int          # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None   # the stated reason, or None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Fenced code blocks of one Markdown file, with the skip marker right above each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang, body = i, m.group(2).lower(), []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith("```"):
            body.append(lines[i][len(m.group(1)):] if lines[i].startswith(m.group(1)) else lines[i])
            i += 1
        prev = lines[start - 1].strip() if start else ""
        skip = SKIP.match(prev)
        out.append(Block(page, start + 1, lang, "\n".join(body) + "\n", skip.group("reason") if skip else None))
        i += 1
    return out


def leanrec_commands(code: str) -> list[list[str]]:
    """Every ``leanrec`` invocation in a shell block: continuations joined, split at ; && || |."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        words, current = list(lexer), []
        for w in words + [";"]:
            if w in (";", "&&", "||", "|", "&"):
                while current and re.match(r"^[A-Z_][A-Z0-9_]*=", current[0]):  # VAR=value leanrec ...
                    current.pop(0)
                if current and current[0] == "leanrec":
                    commands.append(current[1:])
                current = []
            else:
                current.append(w)
    return commands


ALL_BLOCKS = [b for p in [ROOT / "README.md", *PAGES] for b in blocks(p)]
SHELL_BLOCKS = [b for b in ALL_BLOCKS if b.lang in ("bash", "sh", "shell", "console")]


def test_shell_blocks_are_marked_bash():
    """``console``/``sh`` blocks would escape both the runner and the CLI check below."""
    wrong = [b.where for b in SHELL_BLOCKS if b.lang != "bash"]
    assert not wrong, f"use ```bash for commands (```text for output): {wrong}"


def test_skip_markers_give_a_reason_and_sit_on_runnable_blocks():
    for page in [ROOT / "README.md", *PAGES]:
        lines = page.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if "docs-test:" in line:
                assert SKIP.match(line.strip()), f"{page.name}:{n + 1}: write <!-- docs-test: skip REASON -->"
                nxt = FENCE.match(lines[n + 1]) if n + 1 < len(lines) else None
                assert nxt and nxt.group(2) in RUNNABLE, f"{page.name}:{n + 1}: a skip marker must sit right " \
                                                        "above a ```bash or ```python fence"


def _parse(args: list[str]) -> None:
    """Parse one command line with the real CLI, as the shell would run it, without running it.
    (leanrec's groups take no options of their own: a group's first word names its command.)"""
    import typer.main

    from leanrec.cli import app

    cmd, words, path = typer.main.get_command(app), list(args), ["leanrec"]
    ctx = cmd.make_context("leanrec", [], resilient_parsing=True)
    while hasattr(cmd, "get_command"):
        if not words or words[0].startswith("-"):
            raise AssertionError(f"'{' '.join(path)}' is a group: name one of its commands "
                                 f"({', '.join(cmd.list_commands(ctx))})")
        sub = cmd.get_command(ctx, words[0])
        if sub is None:
            raise AssertionError(f"'{' '.join(path)}' has no command {words[0]!r} "
                                 f"({', '.join(cmd.list_commands(ctx))})")
        path.append(words.pop(0))
        cmd = sub
        ctx = cmd.make_context(path[-1], [], parent=ctx, resilient_parsing=True)
    cmd.make_context(path[-1], words, parent=ctx.parent)


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: b.where)
def test_every_leanrec_command_parses(block):
    for args in leanrec_commands(block.code):
        if "--help" in args:
            args = [a for a in args if a != "--help"]
            if not args:
                continue
        try:
            _parse(args)
        except Exception as exc:  # click's usage errors, unknown commands and options
            if type(exc).__name__ == "Exit":  # --help, --version
                continue
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            raise AssertionError(f"{block.where}: 'leanrec {' '.join(args)}': {message}") from None


def _runnable_pages() -> list[Path]:
    return [p for p in [ROOT / "README.md", *PAGES]
            if any(b.lang in RUNNABLE and b.skip is None for b in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", _runnable_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_snippets_run(page, tmp_path):
    """The page's runnable blocks, in order, in one fresh folder, as a reader would paste them."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "COLUMNS": "120"}
    for block in blocks(page):
        if block.lang not in RUNNABLE or block.skip is not None:
            continue
        argv = ["bash", "-euo", "pipefail", "-c", block.code] if block.lang == "bash" \
            else [sys.executable, "-c", block.code]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (f"{block.where} failed (exit {done.returncode}):\n{block.code}\n"
                                      f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")


@pytest.mark.slow
def test_site_builds_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "models.html").is_file()   # the generated API reference


# -- directives ---------------------------------------------------------------------
def test_results_directive_shifts_headings_and_picks_sections(tmp_path):
    hooks = _hooks()
    (tmp_path / "r.md").write_text("# Title\n\ntext\n\n## warm\n\n| a |\n|---|\n\n## cold\n\nc\n")
    whole = hooks.results_block("r.md", root=tmp_path)
    assert whole.startswith("### Title") and "#### warm" in whole
    part = hooks.results_block("r.md", "warm", 2, root=tmp_path)
    assert part.startswith("## warm") and "cold" not in part
    with pytest.raises(hooks.DocsError, match="no section 'hot'"):
        hooks.results_block("r.md", "hot", root=tmp_path)
    with pytest.raises(hooks.DocsError, match="no results file"):
        hooks.results_block("missing.md", root=tmp_path)
    with pytest.raises(hooks.DocsError, match="under benchmarks/results"):
        hooks.results_block("../r.md", root=tmp_path / "sub")


def test_results_directive_errors_name_the_page_line():
    hooks = _hooks()
    with pytest.raises(hooks.DocsError, match=r"p\.md:3: .*no results file"):
        hooks.expand("a\n\n<!-- results: nowhere.md -->\n", "p.md")
    with pytest.raises(hooks.DocsError, match="unknown results option"):
        hooks.expand("<!-- results: quality_ml100k.md colour=red -->", "p.md")
    fenced = "```text\n<!-- results: nowhere.md -->\n```\n"
    assert hooks.expand(fenced, "p.md") == fenced  # examples inside code fences stay as written


def test_config_reference_lists_every_field_with_its_comment():
    import dataclasses

    from leanrec.service.config import ServiceConfig

    table = _hooks().config_reference()
    for f in dataclasses.fields(ServiceConfig):
        assert f"| `{f.name}` |" in table
    assert "SQLAlchemy URL" in table  # the comment beside `db`


def test_every_results_directive_in_the_docs_resolves():
    hooks = _hooks()
    for page in PAGES:
        hooks.expand(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))


# -- README and wording ---------------------------------------------------------------
README_MAX_LINES = 250


def test_readme_is_a_front_door():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES, "details belong in docs/, not the README"


def test_readme_headline_is_generated_from_results():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import headline
    finally:
        sys.path.pop(0)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    inside = text.split(headline.START, 1)[1].split(headline.END, 1)[0].strip()
    assert inside == headline.render().strip(), "README headline is stale: python benchmarks/headline.py --readme"


ALLOWED_ISSUE = ("ValidationIssue", "data issue", "validation issue", "issues.py", "data.issues")


def test_no_project_history_in_readme_or_docs():
    bad = []
    for page in [ROOT / "README.md", *PAGES]:
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\bissues?\b", line, re.I) and not any(a.lower() in line.lower() for a in ALLOWED_ISSUE):
                bad.append(f"{page.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not bad, "say what the product does, not which work item delivered it:\n" + "\n".join(bad)
