"""Cost commands of the CLI: ``cost``, ``bench``, ``plan``, ``encoder export``, ``data synth``.

Thin like the rest of the CLI: parse, call :mod:`leanrec.cost` / :mod:`leanrec.encoders`,
print with rich. Registered on the main app by :mod:`leanrec.cli`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .cli import _progress, app, console, data_app

encoder_app = typer.Typer(no_args_is_help=True, help="Build saved encoders (ONNX fp32/int8, static).")
app.add_typer(encoder_app, name="encoder")


def _config(name, encoder, backend, precision, layers, vectors, index, threads, batch_size):
    from .cost.config import PipelineConfig

    try:
        return PipelineConfig(name=name, encoder=encoder, backend=backend, precision=precision, layers=layers,
                              vectors=vectors, index=index, threads=threads, batch_size=batch_size)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def cost(
    encoder: str = typer.Option("minilm", help="Model name or local sentence-transformers folder."),
    backend: str = typer.Option("onnx", help="torch, onnx, static or tfidf."),
    precision: str = typer.Option("int8", help="fp32, bf16, fp16 (torch) or int8 (onnx)."),
    layers: Optional[int] = typer.Option(None, help="Keep only the first N transformer layers."),
    vectors: str = typer.Option("fp32", help="Vector codec: fp32, fp16, int8, binary, pq64, pca128, trunc128..."),
    index: str = typer.Option("exact", help="Index: exact, hnsw, ivfpq, binary-rescore-int8..."),
    threads: int = typer.Option(1, help="Thread budget for every library (torch, ONNX Runtime, BLAS, faiss)."),
    batch_size: int = typer.Option(32, help="Texts per encoder batch."),
    index_items: int = typer.Option(0, help="Also profile the index on this many generated products (0: skip)."),
    quality: bool = typer.Option(True, help="Measure ML-100K warm/cold NDCG@10 (fetches ML-100K on first use)."),
    out: Path = typer.Option(Path("profile.json"), help="Where to write the profile (JSON)."),
) -> None:
    """Profile one pipeline configuration: throughput, latency, bytes, memory and the quality it keeps."""
    from .cost.bench import prepare_encoders, run_worker

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


@app.command()
def bench(
    out: Path = typer.Option(Path("bench"), help="Folder for report.html, report.json, report.md, pareto.png."),
    ladder: Optional[Path] = typer.Option(None, help="TOML file of [[config]] tables (default: the built-in ladder)."),
    big_model: Optional[Path] = typer.Option(None, help="A larger local sentence-transformers folder to include."),
    quality: bool = typer.Option(True, help="Measure ML-100K quality for every row."),
    quick: bool = typer.Option(False, help="Fewer texts and repeats (a smoke run, not for quoting)."),
) -> None:
    """Run the cost ladder side by side and write the Pareto report."""
    from .cost.bench import run_ladder
    from .cost.config import default_ladder, load_ladder
    from .cost.report import write_report

    try:
        configs = load_ladder(ladder) if ladder else default_ladder(big_model=str(big_model) if big_model else None)
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from None
    sizes = dict(short_n=64, long_n=8, repeats=1, latency_n=20) if quick else {}
    with _progress() as bar:
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


@app.command()
def plan(
    items: str = typer.Option(..., help="Catalogue size, e.g. 10M."),
    users: str = typer.Option(..., help="Users with a profile, e.g. 50M."),
    qps: str = typer.Option(..., help="Recommendation requests per second at peak."),
    new_items_per_day: str = typer.Option("0", help="Items added (and encoded) per day, e.g. 200k."),
    profile: Path = typer.Option(Path("profile.json"), help="A `leanrec cost --index-items N` profile."),
    prices: Optional[Path] = typer.Option(None, help="Prices TOML (default: leanrec/cost/prices.toml)."),
    out: Optional[Path] = typer.Option(None, help="Also write the plan as JSON."),
) -> None:
    """Size cores, RAM, disk, GPU and monthly cost for a target scale, from measurements."""
    from .cost.plan import load_prices, parse_count
    from .cost.plan import plan as make_plan

    try:
        counts = {k: parse_count(v) for k, v in (("items", items), ("users", users), ("qps", qps),
                                                  ("new_items_per_day", new_items_per_day))}
        prof = json.loads(profile.read_text())
        result = make_plan(prof, prices=load_prices(prices), **counts)
    except FileNotFoundError as exc:
        raise typer.BadParameter(f"{exc.filename}: no such file (write a profile with `leanrec cost "
                                 "--index-items 100000 --out profile.json`)") from None
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


@encoder_app.command("export")
def encoder_export(
    out: Path = typer.Argument(..., help="Folder to write the saved encoder to."),
    model: str = typer.Option("minilm", help="Model name or local sentence-transformers folder."),
    backend: str = typer.Option("onnx", help="onnx or static."),
    precision: str = typer.Option("int8", help="fp32 or int8 (onnx)."),
    layers: Optional[int] = typer.Option(None, help="Keep only the first N transformer layers."),
) -> None:
    """Export a saved encoder folder that serving loads without torch."""
    if backend == "onnx":
        from .encoders.onnx_export import export_onnx

        with console.status("exporting and checking against torch"):
            path = export_onnx(model, out, precision=precision, layers=layers)
    elif backend == "static":
        from .encoders.static import distill_static

        with console.status("distilling a static embedding model"):
            path = distill_static(model, out, layers=layers)
    else:
        raise typer.BadParameter(f"backend must be onnx or static, got {backend!r}")
    console.print(f"saved encoder: {path}")
    config = Path(path) / "leanrec_encoder.json"
    if config.exists():
        console.print_json(config.read_text())


@encoder_app.command("distill-layers")
def encoder_distill_layers(
    layers: int = typer.Option(3, help="Keep the first N transformer layers of MiniLM."),
    budget: float = typer.Option(900, help="Training time budget in seconds (CPU)."),
    seed: int = typer.Option(42, help="Random seed."),
) -> None:
    """Prune MiniLM to N layers and distil it to copy the full model (cached as minilm-LN-distilled)."""
    from .encoders.layer_distill import default_corpus, distill_layers
    from .encoders.resolve import distilled_path

    path = distilled_path(layers)
    if (path / "config.json").is_file():
        console.print(f"already built: {path} (delete it to rebuild)")
        return
    with console.status("building the corpus (ML-100K non-cold texts + generated products)"):
        corpus = default_corpus(seed=seed)
    with _progress() as bar:
        task = bar.add_task(f"distilling {layers} layers", total=budget)
        out = distill_layers("minilm", path, texts=corpus, layers=layers, time_budget_s=budget, seed=seed,
                             progress=lambda r: bar.update(task, completed=min(r["seconds"], budget),
                                                           description=f"epoch {r['epoch']}: holdout cosine "
                                                                       f"{r['holdout_cosine']:.4f}"))
    record = json.loads((out / "leanrec_distill.json").read_text())
    console.print(f"saved {out}: best holdout cosine to the full model {record['best_holdout_cosine']:.4f} "
                  f"after {record['train_s']:.0f} s; use it as --encoder minilm-L{layers}-distilled")


@data_app.command("synth")
def data_synth(
    out: Path = typer.Argument(..., help="Parquet file for the catalogue; with --users, a folder for the data set."),
    items: str = typer.Option("100k", help="Number of items, e.g. 1M."),
    users: Optional[str] = typer.Option(None, help="Also generate users and their events (OUT becomes a folder), "
                                                  "e.g. 100k."),
    events: Optional[str] = typer.Option(None, help="Total events, exactly (with --users; default 50 per user), "
                                                   "e.g. 10M."),
    seed: int = typer.Option(42, help="Random seed (same seed, same data)."),
    description_words: Optional[int] = typer.Option(None, help="Add a description of about this many words."),
    partition_rows: str = typer.Option("100k", help="Rows per Parquet part (with --users)."),
) -> None:
    """Generate a realistic product catalogue, or with --users a whole data set (items, events, manifest)."""
    from .cost.plan import parse_count

    try:
        n = parse_count(items)
        n_users = None if users is None else parse_count(users)
        n_events = None if events is None else parse_count(events)
        part_rows = parse_count(partition_rows)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if n_users is None:
        if n_events is not None:
            raise typer.BadParameter("--events needs --users")
        from .data.products import write_products

        with _progress() as bar:
            task = bar.add_task("generating products", total=n)
            write_products(out, n, seed=seed, description_words=description_words,
                           progress=lambda k: bar.advance(task, k))
        console.print(f"wrote {n:,} items to {out}")
        return

    from .data.synth_scale import write_synthetic

    n_events = 50 * n_users if n_events is None else n_events
    with _progress() as bar:
        tasks = {"items": bar.add_task("generating items", total=n),
                 "events": bar.add_task("generating events", total=n_events)}
        try:
            manifest = write_synthetic(out, n, n_users, n_events, seed=seed, description_words=description_words,
                                       partition_rows=part_rows, progress=lambda stage, k: bar.advance(tasks[stage], k))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    parts = manifest["parts"]
    console.print(f"wrote {n:,} items ({len(parts['items'])} parts), {n_users:,} users and {n_events:,} events "
                  f"({len(parts['events'])} parts) to {out}/ (see {out}/manifest.json)")
