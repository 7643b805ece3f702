"""``leanrec compare A.toml B.toml``: an offline A/B test of two configurations.

Thin like the rest of the CLI: parse, call :mod:`leanrec.eval.compare`, print with rich,
write the report with :mod:`leanrec.eval.compare_report`. Registered on the main app by
:mod:`leanrec.cli`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from .cli import app, console


@app.command()
def compare(
    config_a: Annotated[Path, typer.Argument(help="TOML config of side A (the baseline).")],
    config_b: Annotated[Path, typer.Argument(help="TOML config of side B (the candidate).")],
    out: Annotated[Path, typer.Option(help="Folder for compare.json and compare.html.")] = Path("out/compare"),
    alpha: Annotated[float, typer.Option(help="Significance level of the verdicts (and 1 − CI level).")] = 0.05,
    test: Annotated[str, typer.Option(help="Paired test: wilcoxon (signed-rank) or t.")] = "wilcoxon",
    boot: Annotated[int, typer.Option(help="Paired bootstrap resamples of the users.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap resamples.")] = 0,
    primary: Annotated[str, typer.Option(help="The metric whose verdict decides.")] = "ndcg@10",
) -> None:
    """Evaluate two configurations on the same split and test the per-user differences.

    Config format: see the leanrec.eval.compare docstring (model, dataset, protocol, seed and a params table)."""
    from .data.sources.movielens import DataFetchError
    from .eval.abtest import TESTS
    from .eval.compare import (
        METRICS,
        ConfigError,
        check_same_split,
        compare_configs,
        load_config,
    )
    from .eval.compare_report import columns, table_rows, write_report

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if test not in TESTS:
        raise typer.BadParameter(f"--test must be one of {', '.join(TESTS)}, got {test!r}")
    if not 0 < alpha < 1:
        raise typer.BadParameter(f"--alpha must be between 0 and 1, got {alpha}")
    if boot < 1:
        raise typer.BadParameter(f"--boot must be at least 1, got {boot}")
    if primary not in METRICS:
        raise typer.BadParameter(f"--primary must be one of {', '.join(METRICS)}, got {primary!r}")
    try:
        a, b = load_config(config_a), load_config(config_b)
        check_same_split(a, b)  # before any data is loaded or model fitted
    except ConfigError as exc:
        console.print(f"[red]{exc}")
        raise typer.Exit(2)
    try:
        with console.status(f"comparing {a.name} (A) with {b.name} (B)") as status:
            result = compare_configs(a, b, alpha=alpha, test=test, n_boot=boot, seed=seed, primary=primary,
                                     on_status=lambda line: status.update(f"[bold]{line}"))
    except (ValueError, DataFetchError) as exc:  # bad data files, ML-100K unavailable offline
        console.print(f"[red]{exc}")
        raise typer.Exit(1)
    json_path, html_path = write_report(result, out)
    comp = result.comparison.to_dict()
    split = result.split.summary()
    table = Table(title=f"{a.name} (A) vs {b.name} (B) — {result.dataset.name}, {split['protocol']} protocol, "
                        f"{split['test_users']} test users")
    for col in columns(alpha):
        table.add_column(col, justify="left" if col in ("metric", "verdict") else "right")
    for row in table_rows(comp):
        table.add_row(*row)
    console.print(table)
    console.print(f"verdict on {comp['primary']}: [bold]{comp['verdict']}[/] ({test} test, α = {alpha}; secondary "
                  f"metrics Holm-adjusted) · wall time {result.wall_seconds:.1f} s · bootstrap seed {seed}")
    for note in result.notes():
        console.print(f"[yellow]note: {note}")
    console.print(f"report: {json_path} · {html_path}")
