"""CLI for the service: ``leanrec train``, ``leanrec store import``, ``leanrec serve``.

Thin: parse, call the library, print. Registered on the main app by :mod:`leanrec.cli`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from .cli import _check_model, _load, _progress, _tuned_model, app, console

store_app = typer.Typer(no_args_is_help=True, help="The service's database: import data sets.")
app.add_typer(store_app, name="store")


def _phase_progress(progress):
    """A ``(phase, done, total)`` callback that shows one rich bar per phase."""
    tasks: dict[str, int] = {}

    def on(what: str, done: int, total: int) -> None:
        if what not in tasks:
            tasks[what] = progress.add_task(what, total=total)
        progress.update(tasks[what], completed=done)

    return on


def _config(config: Path | None, **overrides):
    from .service.config import load_config

    try:
        return load_config(config).with_overrides(**overrides).check()
    except (ValueError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from None


train_app = typer.Typer(help="Fit a model folder (`leanrec train --model M --out DIR`) or fine-tune the "
                        "sentence encoder (`leanrec train encoder --out DIR`).")
app.add_typer(train_app, name="train")


@train_app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="popular, ease, minilm, hybrid, minilm-ft, projection, attention, "
                                            "sasrec or learned-hybrid.")] = "hybrid",
    out: Annotated[Path | None, typer.Option(
        help="Model folder to write (what `leanrec serve --model` loads).")] = None,
    results: Annotated[Path | None, typer.Option(
        help="results.json whose warm-protocol params to use (default: out/results.json if present, "
             "else defaults).")] = None,
    dataset: Annotated[str, typer.Option()] = "ml-100k",
) -> None:
    """Fit a model on every event of the data set and save it as a model folder."""
    if ctx.invoked_subcommand is not None:
        return
    if out is None:
        raise typer.BadParameter("give --out DIR (the model folder to write), or a subcommand such as "
                                 "`leanrec train encoder --out DIR`", param_hint="--out")
    from .models.persist import save_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _check_model(model)
    ds = _load(dataset)
    estimator, _, chosen = _tuned_model(model, results, ds)
    with console.status(f"fitting {model} {chosen} on {len(ds.events)} events"):
        fitted = estimator.set_params(**chosen).fit(ds)
    try:
        folder = save_model(fitted, out, name=f"{dataset}-{model}", extra={"dataset": dataset, "chosen": chosen})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(f"saved {model} {json.dumps(chosen)} to {folder}")


def _encoder_dataset(dataset: str, synthetic: bool):
    if synthetic:  # hidden: a small generated data set, for tests and smoke runs
        from .data.synth import make_dataset

        return make_dataset(n_users=80, n_items=50, events_per_user=(5, 10), seed=0)
    return _load(dataset)


@train_app.command("encoder")
def train_encoder(
    out: Annotated[Path, typer.Option(help="Folder to write the fine-tuned sentence-transformers model to "
                                           "(use it as an encoder name: --encoder DIR).")],
    dataset: Annotated[str, typer.Option(help="Data set whose interactions give the item pairs.")] = "ml-100k",
    model: Annotated[str, typer.Option(help="Sentence model to start from (name or local folder).")] = "minilm",
    time_budget: Annotated[float, typer.Option(
        help="Training time budget in seconds, validations included.")] = 1200.0,
    max_epochs: Annotated[int, typer.Option(help="At most this many epochs.")] = 6,
    pairs_per_epoch: Annotated[int, typer.Option(help="Item pairs drawn per epoch from the mined pool.")] = 2048,
    batch_size: Annotated[int, typer.Option(help="Pairs per batch (in-batch negatives).")] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW, linear warm-up then decay).")] = 5e-4,
    window: Annotated[int, typer.Option(
        help="Pair items at most this many events apart in a user's history.")] = 3,
    patience: Annotated[int, typer.Option(
        help="Stop after this many epochs without a better validation NDCG@10.")] = 2,
    layers: Annotated[int | None, typer.Option(
        help="Keep only the first N transformer layers (cheaper model).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed and threads, same weights).")] = 42,
    threads: Annotated[int, typer.Option(help="Torch CPU threads.")] = 1,
    precision: Annotated[str, typer.Option(help="fp32, or bf16 (autocast for the forward pass).")] = "fp32",
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in --out.")] = False,
    onnx_int8: Annotated[bool, typer.Option(
        "--onnx-int8/--no-onnx-int8",
        help="Export to ONNX int8 afterwards and compare its validation NDCG@10.")] = True,
    synthetic: Annotated[bool, typer.Option("--synthetic", hidden=True)] = False,
) -> None:
    """Fine-tune the sentence model on items consumed close together; keep the epoch with the best validation NDCG@10.

    Validation: each user's last event (NDCG@10 of the content recommender), after every epoch. A checkpoint after every epoch lets --resume go on.
    """
    from .cost.finetune_check import compare_onnx_int8
    from .encoders.backends import TRAINING_PRECISIONS as PRECISIONS
    from .eval.finetune import finetune_encoder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if precision not in PRECISIONS:
        raise typer.BadParameter(f"choose one of {', '.join(PRECISIONS)}", param_hint="--precision")
    ds = _encoder_dataset(dataset, synthetic)
    with _progress() as bar:
        task = bar.add_task("validating the frozen model", total=None)

        def on(event: dict) -> None:
            kind = event["event"]
            if kind == "epoch_start":
                bar.update(task, description=f"epoch {event['epoch']}/{event['max_epochs']}",
                           total=event["steps"], completed=event["step"])
            elif kind == "step":
                bar.update(task, completed=event["step"],
                           description=f"epoch {event['epoch']}/{max_epochs} · loss {event['loss']:.3f}")
            elif kind == "validate":
                bar.update(task, description=f"validating epoch {event['epoch']}")
            elif kind == "epoch":
                loss = "-" if event["train_loss"] is None else f"{event['train_loss']:.4f}"
                part = " (partial: time budget)" if event.get("partial") else ""
                bar.console.print(f"epoch {event['epoch']}: loss {loss} · valid NDCG@10 "
                                  f"{event['valid_ndcg10']:.4f} · {event['seconds']:.0f} s{part}")

        try:
            folder = finetune_encoder(ds, out, model=model, time_budget_s=time_budget, max_epochs=max_epochs,
                                      pairs_per_epoch=pairs_per_epoch, batch_size=batch_size, lr=lr, window=window,
                                      patience=patience, layers=layers, seed=seed, threads=threads,
                                      precision=precision, resume=resume, progress=on)
        except (ValueError, FileExistsError) as exc:
            raise typer.BadParameter(str(exc)) from None
    record = json.loads((folder / "leanrec_finetune.json").read_text())
    console.print(f"saved {folder}: best epoch {record['best_epoch']} · valid NDCG@10 "
                  f"{record['best_valid_ndcg10']:.4f} (frozen {record['frozen_valid_ndcg10']:.4f}) · stopped: "
                  f"{record['stopped']} · {record['train_s']:.0f} s wall, {record['cpu_s']:.0f} s CPU")
    if record.get("checkpoint_kept"):
        console.print("the time budget ended training: --resume with a larger --time-budget goes on")
    if onnx_int8:
        with console.status("exporting to ONNX int8 and comparing on the validation"):
            cmp = compare_onnx_int8(folder, ds, threads=threads)
        lo, hi = cmp["ratio_ci95"]
        console.print(f"validation NDCG@10: torch fp32 {cmp['torch_ndcg10']:.4f} · ONNX int8 "
                      f"{cmp['onnx_int8_ndcg10']:.4f} (ratio {cmp['ratio']:.3f}, 95% CI {lo:.3f}-{hi:.3f}; "
                      f"top-10 overlap {cmp['top10_overlap']:.3f}; cosine min {cmp['cosine_min']:.4f}, mean "
                      f"{cmp['cosine_mean']:.4f})")
        console.print(f"ONNX int8 ({cmp['int8_scheme']}) export in {cmp['onnx_folder']}", soft_wrap=True)


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
        on = _phase_progress(progress)
        service.start(progress=on)
        try:
            counts = import_dataset(service, ds, progress=on)
        finally:
            service.stop()
    skipped = " (events skipped: the store already has events)" if counts["events_skipped"] else ""
    console.print(f"{dataset}: {counts['items']} items and {counts['events']} events in {service.store.describe()}"
                  f"{skipped}")


@store_app.command("load")
def store_load(
    items: Path = typer.Argument(..., help="Items: a Parquet file or folder (item_id, title, other columns "
                                           "become fields), e.g. `leanrec data synth`'s items/."),
    vectors: Path = typer.Argument(..., help="The finished `leanrec encode ITEMS VECTORS` output of these items."),
    events: Path | None = typer.Option(None, help="Events to append: Parquet (user_id, item_id, timestamp "
                                                  "[, kind, value])."),
    config: Path | None = typer.Option(None, help="Service config (TOML, [service] table)."),
    db: str | None = typer.Option(None, help="Database URL (default sqlite:///leanrec.db)."),
) -> None:
    """Bulk-load an offline-encoded catalogue (and events) in one transaction: COPY on PostgreSQL.

    Serve it with the encoder it was encoded with (`leanrec encode --backend/--precision`
    and the service's encoder_backend / encoder_precision must agree), or the service
    encodes the items again for its own encoder at start-up."""
    from .service.bulk_load import BulkLoadError, load_catalogue
    from .service.store import Store, StoreError

    cfg = _config(config, db=db)
    store = Store(cfg.db)
    problem = store.connection_error()
    if problem:
        raise typer.BadParameter(f"cannot reach {store.describe()}: {problem}", param_hint="--db")
    with _progress() as progress:
        on = _phase_progress(progress)
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
    from .service.lifecycle import preflight

    try:
        preflight(cfg)
    except (OSError, ValueError) as exc:
        console.print(f"[red]cannot start the service: {exc}")
        raise typer.Exit(2) from None
    app_ = create_app(cfg)
    console.print(f"leanrec service on http://{cfg.host}:{cfg.port} · store {cfg.db} · docs at /docs")
    uvicorn.run(app_, host=cfg.host, port=cfg.port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=10)
