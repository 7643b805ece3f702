"""``leanrec cost profile|bench|plan``: measure what a pipeline costs and size the hardware for a target.

Thin like the rest of the CLI: parse, call :mod:`leanrec.cost`, print with rich.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from . import common
from .common import console

#: ``leanrec cost --backend ...`` (before this group existed, ``cost`` profiled) still profiles,
#: for one release; a bare ``leanrec cost`` lists the verbs, as every group does.
app = common.Group(help="Profile a pipeline, run the cost ladder, plan the hardware for a target scale.",
                   cls=common.group_with_default("profile", note=common.renamed_note("cost OPTIONS",
                                                                                     "cost profile OPTIONS")))


def _config(name, encoder, backend, precision, layers, vectors, index, threads, batch_size):
    from ..cost.config import PipelineConfig

    try:
        return PipelineConfig(name=name, encoder=encoder, backend=backend, precision=precision, layers=layers,
                              vectors=vectors, index=index, threads=threads, batch_size=batch_size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command("profile")
def profile(
    encoder: str = typer.Option("minilm", help="Model name or local sentence-transformers folder."),
    backend: str = typer.Option("onnx", help="torch, onnx, static or tfidf."),
    precision: str = typer.Option("int8", help="fp32, bf16, fp16 (torch) or int8 (onnx)."),
    layers: int | None = typer.Option(None, help="Keep only the first N transformer layers."),
    vectors: str = typer.Option("fp32", help="Vector codec: fp32, fp16, int8, binary, pq64, pca128, trunc128..."),
    index: str = typer.Option("exact", help="Index: exact, hnsw, ivfpq, binary-rescore-int8..."),
    threads: int = common.threads_option(1, "Thread budget for every library (torch, ONNX Runtime, BLAS, faiss)."),
    batch_size: int = typer.Option(32, help="Texts per encoder batch."),
    index_items: int = typer.Option(0, help="Also profile the index on this many generated products (0: skip)."),
    quality: bool = typer.Option(True, help="Measure ML-100K warm/cold NDCG@10 (fetches ML-100K on first use)."),
    out: Path = common.out_option(Path("profile.json"), "Where to write the profile (JSON)."),
) -> None:
    """Profile one pipeline configuration: throughput, latency, bytes, memory and the quality it keeps."""
    from ..cost.bench import prepare_encoders, run_worker

    cfg = _config("cli", encoder, backend, precision, layers, vectors, index, threads, batch_size)
    with console.status("preparing the encoder (export / distillation on first use)"):
        prepare_encoders([cfg])
    with console.status(f"profiling {cfg.describe()}") as status:
        result = run_worker({"kind": "pipeline", "config": cfg.as_dict(), "quality": quality},
                            stderr_line=lambda line: status.update(line))
    if result.get("error"):
        console.print(f"[red]{result['error']}")
        raise typer.Exit(1)
    if index_items:
        with console.status(f"profiling index {index} on {index_items:,} generated products") as status:
            result["index_scale"] = run_worker({"kind": "index", "index": index, "n_items": index_items,
                                                "encoder": cfg.as_dict(), "threads": threads},
                                               stderr_line=lambda line: status.update(line))
        if result["index_scale"].get("error"):
            console.print(f"[red]index: {result['index_scale']['error']}")
            raise typer.Exit(1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float))
    enc = result["encoder"]
    table = Table(title=cfg.describe())
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("load", f"{enc['load_s']:.2f} s")
    table.add_row("model bytes", f"{enc['model_bytes'] / 2**20:.1f} MiB")
    table.add_row("encode short texts", f"{enc['throughput_short']['items_per_s']:,.0f} items/s")
    table.add_row("encode 150-word texts", f"{enc['throughput_long']['items_per_s']:,.1f} items/s")
    lat = enc["latency_short"]
    table.add_row("one text p50 / p99", f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f} ms")
    roof = enc.get("roofline")
    if roof:
        table.add_row("roofline (short / long)", f"{roof['short']['fraction']:.0%} / {roof['long']['fraction']:.0%} "
                      f"of {roof['roof_gflops']:.1f} GFLOP/s {roof['precision']}")
    q = result.get("quality")
    if q:
        table.add_row("vector bytes per item", f"{q['vector_bytes_per_item']:.0f}")
        idx = q["warm"]["index"]
        table.add_row("top-10 query p50 / p99 (ML-100K)", f"{idx['latency']['p50_ms']:.3f} / "
                      f"{idx['latency']['p99_ms']:.3f} ms")
        table.add_row("warm / cold NDCG@10", f"{q['warm']['ndcg@10']:.4f} / {q['cold']['ndcg@10']:.4f}")
    if "index_scale" in result:
        s = result["index_scale"]
        table.add_row(f"index at {s['n_items']:,} items", f"build {s['build_s']:.1f} s, {s['bytes_per_item']:.0f} B/item, "
                      f"p50 {s['latency']['p50_ms']:.2f} ms, p99 {s['latency']['p99_ms']:.2f} ms, "
                      f"recall@10 {s['recall@10']:.3f}")
    table.add_row("peak RSS", f"{result['peak_rss_bytes'] / 2**20:.0f} MiB")
    console.print(table)
    console.print(f"profile written to {out}")


@app.command("bench")
def bench(
    out: Path = common.out_option(Path("bench"), "Folder for report.html, report.json, report.md, pareto.png."),
    ladder: Path | None = typer.Option(None, help="TOML file of \\[\\[config]] tables (default: the built-in ladder)."),
    big_model: Path | None = typer.Option(None, help="A larger local sentence-transformers folder to include."),
    quality: bool = typer.Option(True, help="Measure ML-100K quality for every row."),
    quick: bool = typer.Option(False, help="Fewer texts and repeats (a smoke run, not for quoting)."),
) -> None:
    """Run the cost ladder side by side and write the Pareto report."""
    from ..cost.bench import run_ladder
    from ..cost.config import default_ladder, load_ladder
    from ..cost.report import write_report

    try:
        configs = load_ladder(ladder) if ladder else default_ladder(big_model=str(big_model) if big_model else None)
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from None
    sizes = dict(short_n=64, long_n=8, repeats=1, latency_n=20) if quick else {}
    with common.progress() as bar:
        task = bar.add_task("cost ladder", total=len(configs))
        result = run_ladder(configs, quality=quality, **sizes,
                            on_row=lambda name, r: bar.advance(task),
                            on_step=lambda msg: bar.update(task, description=f"cost ladder: {msg[:60]}"))
        bar.update(task, description="cost ladder")
    paths = write_report(result, out)
    for rec in result["summary"]:
        if rec.get("error"):
            console.print(f"[red]{rec['name']}: {rec['error']}")
    console.print(f"wrote {', '.join(str(p) for p in paths.values())} in {result['wall_s']:.0f} s")


@app.command("plan")
def plan(
    items: str = typer.Option(..., help="Catalogue size, e.g. 10M."),
    users: str = typer.Option(..., help="Users with a profile, e.g. 50M."),
    qps: str = typer.Option(..., help="Recommendation requests per second at peak."),
    new_items_per_day: str = typer.Option("0", help="Items added (and encoded) per day, e.g. 200k."),
    profile: Path = typer.Option(Path("profile.json"), help="A `leanrec cost profile --index-items N` profile."),
    prices: Path | None = typer.Option(None, help="Prices TOML (default: leanrec/cost/prices.toml)."),
    out: Path | None = common.out_option(None, "Also write the plan as JSON."),
) -> None:
    """Size cores, RAM, disk, GPU and monthly cost for a target scale, from measurements."""
    from ..cost.plan import load_prices, parse_count
    from ..cost.plan import plan as make_plan

    try:
        counts = {k: parse_count(v) for k, v in (("items", items), ("users", users), ("qps", qps),
                                                  ("new_items_per_day", new_items_per_day))}
        prof = json.loads(profile.read_text())
        result = make_plan(prof, prices=load_prices(prices), **counts)
    except FileNotFoundError as exc:
        raise typer.BadParameter(f"{exc.filename}: no such file (write a profile with `leanrec cost "
                                 "profile --index-items 100000 --out profile.json`)") from None
    except (ValueError, KeyError, json.JSONDecodeError) as exc:
        raise typer.BadParameter(str(exc)) from None
    table = Table(title=f"plan for {counts['items']:,} items, {counts['users']:,} users, {counts['qps']:,} QPS")
    for col in ("part", "resources", f"per month ({result.cost['currency']})"):
        table.add_column(col)
    off, on, c = result.offline, result.online, result.cost
    table.add_row("offline encoding", f"{off['vcpus_in_window']} vCPU for {off['window_hours']:g} h"
                  f"{' + GPU' if off['gpu'] else ', no GPU'}", f"{c['offline_month']:,.0f}")
    table.add_row("online serving", f"{on['vcpus']} vCPU, {on['ram_gb_total']:,.1f} GiB RAM "
                  f"({on['replicas']} replicas × {on['ram_gb_per_replica']:,.1f} GiB)", f"{c['online_month']:,.0f}")
    table.add_row("disk", f"{on['disk_gb']:,.1f} GiB", f"{c['disk_month']:,.0f}")
    table.add_row("[bold]total", "", f"[bold]{c['total_month']:,.0f}")
    console.print(table)
    p = on["predicted_index"]
    console.print(f"predicted index at {p['n_items']:,} items: {p['index_bytes'] / 2**30:.2f} GiB, build "
                  f"{p['build_s']:,.0f} s, query p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms")
    console.print("[bold]assumptions")
    from rich.markup import escape

    for line in result.assumptions:
        console.print(f" • {escape(line)}")
    if out:
        out.write_text(json.dumps(result.as_dict(), indent=1, default=float))
