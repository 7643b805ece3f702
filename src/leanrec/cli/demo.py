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


def _later(test: dict) -> tuple[str, str]:
    """(strictly-later NDCG@10, its user count) of one test result; "-" where not reported."""
    later = test.get("strictly_later") or {}
    value = later.get("ndcg@10")
    return ("-" if value is None else f"{value:.4f}"), str(later.get("n_users", "-"))


def _vs_reference(run: dict) -> str:
    """NDCG@10 as a ratio of the reference's, with its 95% interval (all users, then
    strictly-later targets); "-" where no reference was run."""
    comp = run.get("vs_reference")
    if not comp:
        return "-"
    parts = []
    for subset in ("all", "strictly_later"):
        m = (comp.get(subset) or {}).get("ndcg@10") or {}
        if m.get("ratio") is not None:
            low, high = m["ratio_ci"]
            parts.append(f"{m['ratio']:.2f} [{low:.2f}, {high:.2f}]")
    return " · ".join(parts) or "-"


def _metrics_table(results: dict, protocol: str) -> Table:
    table = Table(title=f"{protocol} protocol — test (full ranking); later = targets strictly after the user's "
                        "previous event")
    table.add_column("model")
    table.add_column("chosen params")
    for col in METRIC_COLUMNS:
        table.add_column(col, justify="right")
    table.add_column("later ndcg@10", justify="right")
    table.add_column("later n", justify="right")
    references = {run[protocol]["vs_reference"]["reference"] for run in results["models"].values()
                  if protocol in run and "vs_reference" in run[protocol]}
    if references:
        table.add_column(f"ndcg@10 / {', '.join(sorted(references))} (all · later)", justify="right")
    table.add_column("fit s", justify="right")
    table.add_column("score s", justify="right")
    for name, per_protocol in results["models"].items():
        run = per_protocol.get(protocol)
        if run is None:
            continue
        ratio = (_vs_reference(run),) if references else ()
        table.add_row(name, _params(run["params"]), *(f"{run['test'][c]:.4f}" for c in METRIC_COLUMNS),
                      *_later(run["test"]), *ratio, f"{run['fit_seconds']:.2f}", f"{run['score_seconds']:.2f}")
    return table


def demo(
    out: Path = common.out_option(Path("out"), "Folder for results.json and recs/*.csv."),
    dataset: str = common.dataset_option(),
    models: str = typer.Option("core", help=f"Comma-separated models ({common.MODELS}) or groups: core "
                               f"({common.CORE}; the fast ones), learned ({common.LEARNED}; trained with time "
                               "budgets; their wall times are in benchmarks/results/demo_time.json), all."),
    protocols: str = typer.Option("warm,cold", help="Comma-separated protocols."),
    track: str = typer.Option("", help="Send training curves and metrics to tensorboard:FOLDER or mlflow:FOLDER "
                              "(needs pip install 'leanrec\\[tracking]'); off by default."),
) -> None:
    """Fetch the data, tune every model on validation, evaluate on test, write the results."""
    from ..experiment import plan_steps, run_experiment
    from ..models.presets import ExperimentConfig, expand_models

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        cfg = ExperimentConfig(models=expand_models(m.strip() for m in models.split(",") if m.strip()),
                               protocols=tuple(p.strip() for p in protocols.split(",") if p.strip()))
        total_steps = plan_steps(cfg)  # checks every model and protocol name before any work
        from ..core.tracking import make_tracker

        tracker = make_tracker(track or None)  # a backend not installed fails here, before any work
    except (ValueError, ImportError) as exc:
        raise typer.BadParameter(str(exc)) from None
    ds = common.load_dataset(dataset)
    with common.progress() as progress:
        enc_task = progress.add_task("encoding items", total=len(ds.items))
        run_task = progress.add_task("tuning and testing", total=total_steps)

        def on_step(label: str) -> None:
            progress.update(run_task, advance=1, description=f"tuning and testing [dim]{label}[/]")

        def on_status(line: str) -> None:
            progress.update(run_task, description=f"tuning and testing [dim]{line}[/]")

        with tracker:
            results = run_experiment(ds, out, cfg, on_step=on_step, on_status=on_status, tracker=tracker,
                                     on_encode=lambda n: progress.update(enc_task, advance=n))
        progress.update(enc_task, completed=len(ds.items))
    for protocol in cfg.protocols:
        console.print(_metrics_table(results, protocol))
    emb = results.get("embedding_cache") or {}
    if emb:
        console.print(f"embedding cache: {emb['hits']} hits, {emb['misses']} encoded, {emb['seconds']:.1f} s")
    console.print(f"wall time {results['wall_seconds']:.1f} s · seed {results['seed']} · "
                  f"results in {out / 'results.json'} · lists in {out / 'recs'}")
