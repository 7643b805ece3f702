"""What every command module shares: the console, progress bars, the options spelled one way
everywhere, and the machinery that keeps an old spelling working for one release.

This module imports no command module (``tests/test_cli_layout.py`` checks it): each noun-group
module imports this one and the library, and :mod:`leanrec.cli` assembles the app. Nothing
here imports the library at import time, so ``leanrec --help`` stays quick (loading
:mod:`leanrec.models.presets` alone takes about 3.5 s: scikit-learn and SciPy).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from typer.core import TyperCommand, TyperGroup

console = Console()
if not console.is_terminal:  # piped or logged: don't squeeze the tables into 80 columns
    console = Console(width=200)
DATASETS = ("ml-100k", "ml-1m")  # leanrec.data.BUILTIN, spelled here so that --help imports no library


def progress() -> Progress:
    """The one progress-bar style of the CLI (label, bar, done/total, elapsed)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def phase_progress(bar: Progress) -> Callable[[str, int, int], None]:
    """A ``(phase, done, total)`` callback that shows one rich bar per phase."""
    tasks: dict[str, int] = {}

    def on(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = bar.add_task(what, total=total)
        bar.update(tasks[what], completed=done)

    return on


def say(line: str) -> None:
    """One plain line on stderr (never wrapped or styled), e.g. an old spelling's new name."""
    typer.echo(line, err=True)


# -- data sets ------------------------------------------------------------------------------

def check_dataset(name: str) -> None:
    if name not in DATASETS:
        raise typer.BadParameter(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")


def load_dataset(name: str):
    """The named data set, fetched and verified on first use, behind a spinner."""
    from ..data import load

    check_dataset(name)
    with console.status(f"loading {name} (fetching and verifying it on first use)"):
        return load(name)


# -- the options every command spells the same way -------------------------------------------

def dataset_option(help: str = "Data set.") -> typer.models.OptionInfo:
    return typer.Option("ml-100k", "--dataset", help=f"{help} Available: {', '.join(DATASETS)}.")


def k_option(default: int = 10, help: str = "List length.") -> typer.models.OptionInfo:
    return typer.Option(default, "-k", "--k", help=help)


def out_option(default, help: str) -> typer.models.OptionInfo:
    return typer.Option(default, "--out", help=help)


def seed_option(default: int, help: str = "Random seed (same seed, same result).") -> typer.models.OptionInfo:
    return typer.Option(default, "--seed", help=help)


def threads_option(default: int = 1, help: str = "Thread budget.") -> typer.models.OptionInfo:
    return typer.Option(default, "--threads", help=help)


def check_k(k: int) -> None:
    if k < 1:
        raise typer.BadParameter(f"-k must be at least 1, got {k}", param_hint="-k")


# -- model names: from the one registry, filled into help only when help is shown -----------

#: placeholders a help text may hold; :class:`Command` fills them from
#: :mod:`leanrec.models.presets` (the one list of model names) when the help is rendered.
MODELS, CORE, LEARNED = "{models}", "{core models}", "{learned models}"


def model_names() -> tuple[str, ...]:
    """Every model name, from the registry (imported here, late: it costs seconds)."""
    from ..models.presets import MODEL_NAMES

    return tuple(MODEL_NAMES)


def fill_model_names(text: str) -> str:
    """``text`` with :data:`MODELS`, :data:`CORE` and :data:`LEARNED` replaced by the names."""
    if "{" not in text:
        return text
    from ..models.presets import CORE_MODELS, LEARNED_MODELS

    return (text.replace(MODELS, ", ".join(model_names())).replace(CORE, ", ".join(CORE_MODELS))
            .replace(LEARNED, ", ".join(LEARNED_MODELS)))


def model_option(default: str = "hybrid", help: str = "Model") -> typer.models.OptionInfo:
    return typer.Option(default, "--model", help=f"{help}: {MODELS}.")


def check_model(model: str) -> None:
    """Fail on an unknown model name before any data is loaded."""
    names = model_names()
    if model not in names:
        raise typer.BadParameter(f"unknown model {model!r}; choose from {', '.join(names)}", param_hint="--model")


class Command(TyperCommand):
    """Every leanrec command: fills the model-name placeholders of its help from the registry
    when the help is shown, and leaves hidden arguments (old spellings) out of the usage line."""

    def format_help(self, ctx, formatter) -> None:
        self.help = fill_model_names(self.help or "") or None
        for param in self.params:
            if getattr(param, "help", None):
                param.help = fill_model_names(param.help)
        return super().format_help(ctx, formatter)

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if not getattr(param, "hidden", False):
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


# -- old spellings (kept for one release) ------------------------------------------------------

def renamed_note(old: str, new: str) -> str:
    return f"`leanrec {old}` is now `leanrec {new}`; the old name goes in the next release"


def legacy_value(value, old_value, *, old: str, new: str, option: str):
    """The value of ``option``, or of the hidden old positional that stood for it (saying so).

    ``value`` is the option's (``None`` when not given); giving both, differently, is an error."""
    if old_value is None:
        return value
    say(renamed_note(old, new))
    if value is not None and value != old_value:
        raise typer.BadParameter(f"given twice: {old_value} (old positional) and {value}", param_hint=option)
    return old_value


def require(value, option: str):
    """``value``, or a usage error naming ``option`` when it was not given."""
    if value is None:
        raise typer.BadParameter(f"missing: give {option}", param_hint=option)
    return value


class OldSpelling(Command):
    """A hidden stand-in for an old command name: says the new name on stderr, then parses and
    runs exactly the new command (same function; see :func:`alias`)."""

    note = ""

    def parse_args(self, ctx, args):
        say(self.note)
        return super().parse_args(ctx, args)


def _as_argument(param: inspect.Parameter) -> inspect.Parameter:
    """An option's parameter turned into a positional argument (an old spelling's)."""
    opt = param.default
    return param.replace(default=typer.Argument(opt.default, help=opt.help, show_default=opt.show_default))


def _as_option(param: inspect.Parameter, flag: str) -> inspect.Parameter:
    opt = copy.copy(param.default)
    opt.param_decls = (flag,)
    return param.replace(default=opt)


def alias(group: typer.Typer, name: str, func: Callable, *, old: str, new: str,
          positional: tuple[str, ...] = (), options: dict[str, str] | None = None) -> None:
    """Register ``func`` (the new command's function) on ``group`` as the hidden command ``name``.

    ``positional`` names options of the new command that the old one took as trailing
    positional arguments (in that order); ``options`` maps a parameter to its old flag. Only
    the signature changes: the body is the new command's, so the two never drift apart."""
    sig = inspect.signature(func, eval_str=True)
    params = dict(sig.parameters)
    for pname, flag in (options or {}).items():
        params[pname] = _as_option(params[pname], flag)
    moved = [_as_argument(params.pop(p)) for p in positional]
    args = [p for p in params.values() if isinstance(p.default, typer.models.ArgumentInfo)]
    rest = [p for p in params.values() if not isinstance(p.default, typer.models.ArgumentInfo)]

    def run(**kwargs):
        return func(**kwargs)

    run.__signature__ = sig.replace(parameters=args + moved + rest)
    run.__name__, run.__doc__ = func.__name__, func.__doc__
    cls = type("OldSpelling", (OldSpelling,), {"note": renamed_note(old, new)})
    group.command(name, hidden=True, cls=cls, help=f"Old name of `leanrec {new}`.")(run)


def group_with_default(command: str, *, note: str | None = None, on_no_args: bool = False) -> type[TyperGroup]:
    """A group class that runs ``command`` when the first argument is an option other than
    ``--help`` (``leanrec cost --backend onnx``, ``leanrec train --model M``: old spellings from
    when the group's name was a command that took only options), or, with ``on_no_args``, when
    there is none. ``note``, if given, is said on stderr when that happens."""

    class DefaultGroup(TyperGroup):
        def parse_args(self, ctx, args):
            first = args[0] if args else None
            if (first is None and on_no_args) or (first is not None and first.startswith("-")
                                                  and first not in ctx.help_option_names):
                if note:
                    say(note)
                args = [command, *args]
            return super().parse_args(ctx, args)

    return DefaultGroup


class Group(typer.Typer):
    """A noun group (or the app): lists its verbs when called bare; its commands are
    :class:`Command` unless told otherwise."""

    def __init__(self, help: str, **kwargs) -> None:
        kwargs.setdefault("no_args_is_help", True)
        super().__init__(help=help, add_completion=False, **kwargs)

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or Command, **kwargs)
