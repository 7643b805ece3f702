"""``leanrec model train|recommend|compare|ramp``: fit a recommender, ask it, A/B-test two of them,
rank new users after their first few events.

Thin like the rest of the CLI: parse, call the library (:mod:`leanrec.experiment`,
:mod:`leanrec.models.persist`, :mod:`leanrec.explain`, :mod:`leanrec.eval.compare`), print
with rich.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.table import Table

from . import common
from .common import console

app = common.Group(help="Fit a recommender (saved as a model folder), ask it for lists, A/B-test two configurations.")

RESULTS_HELP = "results.json whose warm-protocol params to use (default: out/results.json if present, else defaults)."


def tuned_model(model: str, results: Path | None, ds=None):
    """(estimator, tuned params per model, the params chosen for ``model``): the demo's
    warm-protocol choices from ``results`` (default ``out/results.json``) when it exists,
    else the first point of the model's grid. ``minilm-ft`` needs ``ds``: its encoder is
    MiniLM fine-tuned on all of ``ds`` (cached; trained now, with a bar, if missing)."""
    from ..models.presets import ExperimentConfig, model_grid

    path = results or Path("out/results.json")
    tuned = json.loads(path.read_text())["models"] if path.exists() else {}
    params = {name: run["warm"]["params"] for name, run in tuned.items() if "warm" in run}
    cfg = ExperimentConfig()
    finetuned = None
    if model == "minilm-ft" and ds is not None:
        from ..eval.finetune import ensure_finetuned

        with common.progress() as progress:
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


def _fit(model: str, results: Path | None, ds):
    """(fitted model, chosen params): ``model`` with its tuned params fitted on every event of ``ds``."""
    estimator, _, chosen = tuned_model(model, results, ds)
    with console.status(f"fitting {model} {chosen} on {len(ds.events)} events"):
        return estimator.set_params(**chosen).fit(ds), chosen


@app.command("train")
def train(
    out: Path = common.out_option(..., "Model folder to write (what `leanrec service serve --model` loads)."),
    model: str = common.model_option("hybrid", "Model (a TF-IDF one cannot be saved: its vocabulary is fitted "
                                               "on a fixed corpus)"),
    results: Path | None = typer.Option(None, help=RESULTS_HELP),
    dataset: str = common.dataset_option(),
) -> None:
    """Fit a model on every event of the data set and save it as a model folder."""
    from ..models.persist import save_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    common.check_model(model)
    fitted, chosen = _fit(model, results, common.load_dataset(dataset))
    try:
        folder = save_model(fitted, out, name=f"{dataset}-{model}", extra={"dataset": dataset, "chosen": chosen})
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(f"saved {model} {json.dumps(chosen)} to {folder}")


@app.command("recommend")
def recommend(
    user: str = typer.Option(..., "--user", help="User id."),
    k: int = common.k_option(10, "List length."),
    model: str = common.model_option("hybrid"),
    results: Path | None = typer.Option(None, help=RESULTS_HELP),
    dataset: str = common.dataset_option(),
    explain: bool = typer.Option(False, "--explain", help="Say why: each item's score split into the "
                                 "user's history items, what it shares with them, and one sentence."),
    as_json: bool = typer.Option(False, "--json", help="Print the list (and explanations) as JSON instead."),
) -> None:
    """Top-k items for a user, fitted on all of the data set's events."""
    import pandas as pd

    from ..data.schema import coerce_ids_like
    from ..explain import plain_id

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    common.check_k(k)
    common.check_model(model)
    ds = common.load_dataset(dataset)
    user_id = coerce_ids_like(pd.Series([user]), ds.events.frame["user_id"]).iloc[0]
    if user_id is None or user_id not in set(ds.events.frame["user_id"]):
        console.print(f"[red]unknown user {user!r} in {dataset}")
        raise typer.Exit(2)
    fitted, chosen = _fit(model, results, ds)
    recs = fitted.recommend(user_id, k=k)
    reasons = None
    if explain:
        from ..explain import explain_items

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


@app.command("compare")
def compare(
    config_a: Path = typer.Argument(..., help="TOML config of side A (the baseline)."),
    config_b: Path = typer.Argument(..., help="TOML config of side B (the candidate)."),
    out: Path = common.out_option(Path("out/compare"), "Folder for compare.json and compare.html."),
    alpha: float = typer.Option(0.05, help="Significance level of the verdicts (and 1 − CI level)."),
    test: str = typer.Option("wilcoxon", help="Paired test: wilcoxon (signed-rank) or t."),
    boot: int = typer.Option(10_000, help="Paired bootstrap resamples of the users."),
    seed: int = common.seed_option(0, "Seed of the bootstrap resamples."),
    primary: str = typer.Option("ndcg@10", help="The metric whose verdict decides."),
    seeds: int | None = typer.Option(
        None, "--seeds", help="Model seeds per side for seeded models (seed, seed+1, …; B's never reuse A's). "
                              "Default 3; 1 compares two single instances. Deterministic models are always fitted once."),
) -> None:
    """Evaluate two configurations on the same split and test whether they differ.

    Seeded models are fitted once per seed and the verdict comes from Welch's t over the
    per-seed means; deterministic models are fitted once and compared per user (paired test).
    Config format: see the leanrec.eval.compare docstring (model, dataset, protocol, seed or seeds,
    and a params table)."""
    from ..data.sources.movielens import DataFetchError
    from ..eval.abtest import TESTS
    from ..eval.compare import (
        METRICS,
        ConfigError,
        check_same_split,
        compare_configs,
        load_config,
    )
    from ..eval.compare_report import (
        SEED_COLUMNS,
        columns,
        fmt,
        fmt_p,
        seed_rows,
        table_rows,
        user_paired_rows,
        write_report,
    )

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if test not in TESTS:
        raise typer.BadParameter(f"--test must be one of {', '.join(TESTS)}, got {test!r}")
    if not 0 < alpha < 1:
        raise typer.BadParameter(f"--alpha must be between 0 and 1, got {alpha}")
    if boot < 1:
        raise typer.BadParameter(f"--boot must be at least 1, got {boot}")
    if primary not in METRICS:
        raise typer.BadParameter(f"--primary must be one of {', '.join(METRICS)}, got {primary!r}")
    if seeds is not None and seeds < 1:
        raise typer.BadParameter(f"--seeds must be at least 1, got {seeds}")
    try:
        a, b = load_config(config_a), load_config(config_b)
        check_same_split(a, b)  # before any data is loaded or model fitted
    except ConfigError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2)
    try:
        with console.status(f"comparing {a.name} (A) with {b.name} (B)") as status:
            result = compare_configs(a, b, alpha=alpha, test=test, n_boot=boot, seed=seed, primary=primary,
                                     n_seeds=seeds, on_status=lambda line: status.update(f"[bold]{line}"))
    except (ValueError, DataFetchError) as exc:  # bad data files, ML-100K unavailable offline
        console.print(f"[red]{exc}")
        raise typer.Exit(1)
    json_path, html_path = write_report(result, out)
    report = result.to_dict()
    comp = report["comparison"]
    split = result.split.summary()

    def show(title: str, header, rows) -> None:
        table = Table(title=title)
        for col in header:
            table.add_column(col, justify="left" if col in ("metric", "verdict", "side", "name", "model", "seeds",
                                                            "seeded") else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)

    show("seeds", SEED_COLUMNS, seed_rows(report))
    show(f"{a.name} (A) vs {b.name} (B) — {result.dataset.name}, {split['protocol']} protocol, "
         f"{split['test_users']} test users — {comp['decided_by']}", columns(alpha, comp["level"]), table_rows(comp))
    if comp["level"] == "seeds":
        show("instance-level / user-paired (secondary: per-user metric averaged over each side's seeds; does not "
             "decide)", columns(alpha), user_paired_rows(comp))
    pm = comp["metrics"][comp["primary"]]
    ci = "–" if pm["ci_low"] is None else f"[{pm['ci_low']:+.4f}, {pm['ci_high']:+.4f}]"
    df = f", df {fmt(pm['df'], '.1f')}" if comp["level"] == "seeds" else ""
    console.print(f"verdict on {comp['primary']}: [bold]{comp['verdict']}[/] — decided by {comp['decided_by']} "
                  f"(p {fmt_p(pm['p_value'])}, {1 - alpha:.0%} CI {ci}{df}; α = {alpha}; secondary metrics "
                  f"Holm-adjusted) · wall time {result.wall_seconds:.1f} s · bootstrap seed {seed}")
    for note in result.notes():
        console.print(f"[yellow]note: {note}")
    console.print(f"report: {json_path} · {html_path}")


@app.command("ramp")
def ramp(
    out: Path = common.out_option(Path("out/ramp"), "Folder for ramp.json and ramp.md."),
    dataset: str = common.dataset_option(),
    models: str = typer.Option("popular,tfidf,minilm", help="Comma-separated models: demographic (popularity in "
                               "the user's age/gender/occupation group; needs a users table) or any of "
                               f"{common.MODELS} but learned-hybrid and minilm-ft, or a group (core, learned)."),
    sizes: str = typer.Option("0,1,3,5,10", help="History lengths n: rank the (n+1)-th event given the first n."),
    fraction: float = typer.Option(0.1, help="Share of the users held out as new users."),
    seed: int = common.seed_option(42, "Seed of the held-out users' draw (and of the models)."),
) -> None:
    """The new-user ramp: hold out a share of the users, fit on the rest, rank each held-out
    user's (n+1)-th event given only their first n events, for every n (no refit)."""
    from ..eval.new_users import ramp_models, run_ramp, write_ramp
    from ..models.presets import ExperimentConfig

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        names = ramp_models(models.split(","))
        ns = tuple(int(n) for n in sizes.split(",") if n.strip())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not names:
        raise typer.BadParameter("--models names no model")
    if not 0 < fraction < 1:
        raise typer.BadParameter(f"--fraction must be between 0 and 1, got {fraction}")
    ds = common.load_dataset(dataset)
    if "demographic" in names and getattr(ds, "users", None) is None:
        raise typer.BadParameter(f"demographic needs a users table (user_id, age, gender, occupation); "
                                 f"{dataset} has none here")
    try:
        with console.status("new-user ramp") as status:
            result = run_ramp(ds, names, ExperimentConfig(seed=seed), sizes=ns, fraction=fraction,
                              on_step=lambda line: status.update(f"[bold]new-user ramp: {line}"))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    json_path, md_path = write_ramp(result, out)
    by = {(r["model"], r["n"]): r for r in result["rows"]}
    table = Table(title=f"new-user ramp — NDCG@10 (Recall@10) of the (n+1)-th event given the first n; "
                        f"{result['split']['held_out_users']} held-out users")
    table.add_column("model")
    for n in result["sizes"]:
        table.add_column(f"n={n}", justify="right")
    for name in names:
        table.add_row(name, *(("–" if by[(name, n)]["ndcg@10"] is None else
                               f"{by[(name, n)]['ndcg@10']:.4f} ({by[(name, n)]['recall@10']:.3f})")
                              for n in result["sizes"]))
    table.add_row("users", *(str(result["split"]["targets"][str(n)]) for n in result["sizes"]))
    table.add_row("strictly later", *(str(by[(names[0], n)]["strictly_later"]["n_users"]) for n in result["sizes"]))
    console.print(table)
    console.print(f"wall time {result['wall_seconds']:.1f} s · results in {json_path} · {md_path}")
