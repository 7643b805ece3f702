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
    seeds: Annotated[int | None, typer.Option(
        "--seeds", help="Model seeds per side for seeded models (seed, seed+1, …; B's never reuse A's). Default 3; "
                        "1 compares two single instances. Deterministic models are always fitted once.")] = None,
) -> None:
    """Evaluate two configurations on the same split and test whether they differ.

    Seeded models are fitted once per seed and the verdict comes from Welch's t over the
    per-seed means; deterministic models are fitted once and compared per user (paired test).
    Config format: see the leanrec.eval.compare docstring (model, dataset, protocol, seed or seeds,
    and a params table)."""
    from .data.sources.movielens import DataFetchError
    from .eval.abtest import TESTS
    from .eval.compare import (
        METRICS,
        ConfigError,
        check_same_split,
        compare_configs,
        load_config,
    )
    from .eval.compare_report import (
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
