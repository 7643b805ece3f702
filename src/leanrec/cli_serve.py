"""CLI for the service: ``leanrec train``, ``leanrec store import``, ``leanrec serve``.

Thin: parse, call the library, print. Registered on the main app by :mod:`leanrec.cli`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from .cli import _load, _progress, _tuned_model, app, console

store_app = typer.Typer(no_args_is_help=True, help="The service's database: import data sets.")
app.add_typer(store_app, name="store")


def _config(config: Path | None, **overrides):
    from .service.config import load_config

    try:
        return load_config(config).with_overrides(**overrides).check()
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def train(
    model: str = typer.Option("hybrid", help="popular, ease, minilm or hybrid."),
    out: Path = typer.Option(..., help="Model folder to write (what `leanrec serve --model` loads)."),
    results: Path | None = typer.Option(None, help="results.json whose warm-protocol params to use "
                                           "(default: out/results.json if present, else defaults)."),
    dataset: str = typer.Option("ml-100k"),
) -> None:
    """Fit a model on every event of the data set and save it as a model folder."""
    from .models.persist import save_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    estimator, _, chosen = _tuned_model(model, results)
    ds = _load(dataset)
    with console.status(f"fitting {model} {chosen} on {len(ds.events)} events"):
        fitted = estimator.set_params(**chosen).fit(ds)
    try:
        folder = save_model(fitted, out, name=f"{dataset}-{model}", extra={"dataset": dataset, "chosen": chosen})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(f"saved {model} {json.dumps(chosen)} to {folder}")


@store_app.command("import")
def store_import(
    dataset: str = typer.Argument("ml-100k"),
    config: Path | None = typer.Option(None, help="Service config (TOML, [service] table)."),
    db: str | None = typer.Option(None, help="Database URL (default sqlite:///leanrec.db)."),
    model: Path | None = typer.Option(None, help="Model folder whose encoder encodes the items."),
    data_dir: Path | None = typer.Option(None, help="Where the vector index is persisted."),
) -> None:
    """Load a data set's items and events into the service's store (events only into an empty one)."""
    from .service.core import RecService
    from .service.importer import import_dataset

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = _config(config, db=db, model=str(model) if model else None,
                  data_dir=str(data_dir) if data_dir else None)
    ds = _load(dataset)
    service = RecService(cfg)
    with _progress() as progress:
        tasks: dict[str, int] = {}

        def on(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = progress.add_task(what, total=total)
            progress.update(tasks[what], completed=done)

        service.start(progress=on)
        try:
            counts = import_dataset(service, ds, progress=on)
        finally:
            service.stop()
    skipped = " (events skipped: the store already has events)" if counts["events_skipped"] else ""
    console.print(f"{dataset}: {counts['items']} items and {counts['events']} events in {service.store.describe()}"
                  f"{skipped}")


@app.command()
def serve(
    config: Path | None = typer.Option(None, help="Service config (TOML, [service] table); flags override it."),
    host: str | None = typer.Option(None, help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8000)."),
    db: str | None = typer.Option(None, help="Database URL: sqlite:///FILE (default sqlite:///leanrec.db) "
                                     "or postgresql://USER@HOST/DB."),
    api_key_file: Path | None = typer.Option(None, help="File of 'read:KEY' / 'write:KEY' lines."),
    model: Path | None = typer.Option(None, help="Model folder from `leanrec train` (default: the content "
                                         "recommender, or the model the store last served)."),
    data_dir: Path | None = typer.Option(None, help="Where the vector index is persisted."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Start the HTTP service (FastAPI under uvicorn; OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from .service.api import create_app

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = _config(config, host=host, port=port, db=db, api_key_file=str(api_key_file) if api_key_file else None,
                  model=str(model) if model else None, data_dir=str(data_dir) if data_dir else None)
    from .service.core import preflight

    try:
        preflight(cfg)
    except (OSError, ValueError) as exc:
        console.print(f"[red]cannot start the service: {exc}")
        raise typer.Exit(2) from None
    app_ = create_app(cfg)
    console.print(f"leanrec service on http://{cfg.host}:{cfg.port} · store {cfg.db} · docs at /docs")
    uvicorn.run(app_, host=cfg.host, port=cfg.port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=10)
