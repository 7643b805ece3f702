"""``leanrec demo``: the main job: fetch the data, tune every model, evaluate, write the results.

Thin like the rest of the CLI: parse, call :func:`leanrec.experiment.run_experiment`, print
the metrics tables with rich.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.table import Table

from . import common
from .common import console

METRIC_COLUMNS = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "mrr@20", "auc", "coverage@10")


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


def demo(
    out: Path = common.out_option(Path("out"), "Folder for results.json and recs/*.csv."),
    dataset: str = common.dataset_option(),
    models: str = typer.Option("core", help=f"Comma-separated models ({common.MODELS}) or groups: core "
                               f"({common.CORE}; ~1 minute), learned ({common.LEARNED}; trained with time "
                               "budgets, ~30 minutes on 2 cores), all."),
    protocols: str = typer.Option("warm,cold", help="Comma-separated protocols."),
) -> None:
    """Fetch the data, tune every model on validation, evaluate on test, write the results."""
    from ..experiment import plan_steps, run_experiment
    from ..models.presets import ExperimentConfig, expand_models

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        cfg = ExperimentConfig(models=expand_models(m.strip() for m in models.split(",") if m.strip()),
                               protocols=tuple(p.strip() for p in protocols.split(",") if p.strip()))
        total_steps = plan_steps(cfg)  # checks every model and protocol name before any work
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    ds = common.load_dataset(dataset)
    with common.progress() as progress:
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
