"""``leanrec service serve|import|load``: the HTTP service and its store.

Thin: parse, call :mod:`leanrec.service`, print.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from . import common
from .common import console

app = common.Group(help="The HTTP service and its database: serve, import a data set, bulk-load an encoded catalogue.")


def _config(config: Path | None, **overrides):
    from ..service.config import load_config

    try:
        return load_config(config).with_overrides(**overrides).check()
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from None



@app.command("import")
def import_(
    dataset: str = common.dataset_option(),
    config: Path | None = typer.Option(None, help="Service config (TOML, \\[service] table)."),
    db: str | None = typer.Option(None, help="Database URL (default sqlite:///leanrec.db)."),
    model: Path | None = typer.Option(None, help="Model folder whose encoder encodes the items."),
    data_dir: Path | None = typer.Option(None, help="Where the vector index is persisted."),
) -> None:
    """Load a data set's items and events into the service's store (events only into an empty one)."""
    from ..service.core import RecService
    from ..service.importer import import_dataset

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = _config(config, db=db, model=str(model) if model else None,
                  data_dir=str(data_dir) if data_dir else None)
    ds = common.load_dataset(dataset)
    service = RecService(cfg)
    with common.progress() as progress:
        on = common.phase_progress(progress)
        service.start(progress=on)
        try:
            counts = import_dataset(service, ds, progress=on)
        finally:
            service.stop()
    skipped = " (events skipped: the store already has events)" if counts["events_skipped"] else ""
    console.print(f"{dataset}: {counts['items']} items and {counts['events']} events in {service.store.describe()}"
                  f"{skipped}")


@app.command("load")
def load(
    items: Path = typer.Argument(..., help="Items: a Parquet file or folder (item_id, title, other columns "
                                           "become fields), e.g. `leanrec data synth --users`'s items/."),
    vectors: Path = typer.Argument(..., help="The finished `leanrec batch encode ITEMS --out VECTORS` output of these items."),
    events: Path | None = typer.Option(None, help="Events to append: Parquet (user_id, item_id, timestamp "
                                                  "[, kind, value])."),
    config: Path | None = typer.Option(None, help="Service config (TOML, \\[service] table)."),
    db: str | None = typer.Option(None, help="Database URL (default sqlite:///leanrec.db)."),
) -> None:
    """Bulk-load an offline-encoded catalogue (and events) in one transaction: COPY on PostgreSQL.

    Serve it with the encoder it was encoded with (`leanrec batch encode --backend/--precision`
    and the service's encoder_backend / encoder_precision must agree), or the service
    encodes the items again for its own encoder at start-up."""
    from ..service.bulk_load import BulkLoadError, load_catalogue
    from ..service.store import Store, StoreError

    cfg = _config(config, db=db)
    try:
        store = Store(cfg.db)
    except StoreError as exc:
        raise typer.BadParameter(str(exc), param_hint="--db") from None
    problem = store.connection_error()
    if problem:
        raise typer.BadParameter(f"cannot reach {store.describe()}: {problem}", param_hint="--db")
    with common.progress() as progress:
        on = common.phase_progress(progress)
        try:
            out = load_catalogue(store, items, vectors, events_path=events, progress=on)
        except (BulkLoadError, FileNotFoundError, StoreError, ValueError) as exc:
            console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(2) from None
        finally:
            store.close()
    rebuilt = ("; its approximate index was dropped, the service rebuilds it at start-up"
               if out["ann_index_dropped"] else "")
    console.print(f"{out['items']:,} items ({out['created']:,} new, {out['replaced']:,} replaced), {out['dim']}-d "
                  f"vectors of {out['encoder_id']} and {out['events']:,} events in {out['store']} by "
                  f"{out['method']} in {out['seconds']['total']:.1f} s{rebuilt}", soft_wrap=True)


@app.command("serve")
def serve(
    config: Path | None = typer.Option(None, help="Service config (TOML, \\[service] table); flags override it."),
    host: str | None = typer.Option(None, help="Bind address (default 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port (default 8000)."),
    db: str | None = typer.Option(None, help="Database URL: sqlite:///FILE (default sqlite:///leanrec.db) "
                                     "or postgresql://USER@HOST/DB."),
    api_key_file: Path | None = typer.Option(None, help="File of 'read:KEY' / 'write:KEY' lines."),
    model: Path | None = typer.Option(None, help="Model folder from `leanrec model train` (default: the content "
                                         "recommender, or the model the store last served)."),
    data_dir: Path | None = typer.Option(None, help="Where the vector index is persisted."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Start the HTTP service (FastAPI under uvicorn; OpenAPI at /docs and /openapi.json)."""
    import uvicorn

    from ..service.api import create_app

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = _config(config, host=host, port=port, db=db, api_key_file=str(api_key_file) if api_key_file else None,
                  model=str(model) if model else None, data_dir=str(data_dir) if data_dir else None)
    from ..service.lifecycle import preflight

    try:
        preflight(cfg)
    except (OSError, ValueError) as exc:
        console.print(f"[red]cannot start the service: {exc}")
        raise typer.Exit(2) from None
    app_ = create_app(cfg)
    from ..service.store import redact_url

    console.print(f"leanrec service on http://{cfg.host}:{cfg.port} · store {redact_url(cfg.db)} · docs at /docs")
    uvicorn.run(app_, host=cfg.host, port=cfg.port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=10)
