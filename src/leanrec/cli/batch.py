"""``leanrec batch encode|recommend|index|plan``: batch jobs on Dask distributed, and their planner.

Thin like the rest of the CLI: parse, open a cluster with :func:`leanrec.scale.connect`
(the scheduler at ``--scheduler``, or a local one on 127.0.0.1), call
:mod:`leanrec.scale`, show partitions done / total with rich. ``--threads-per-worker`` keeps
Dask's name (next to ``--workers``): it is each worker process's budget, not the job's.
"""

from __future__ import annotations

from pathlib import Path

import typer

from . import common
from .common import console

app = common.Group(help="Batch jobs on Dask (a local cluster, or --scheduler): encode a catalogue, recommend "
                        "for every user, build index shards; plan a job at another size.")


def _fail(exc: Exception) -> None:
    console.print(f"[red]{type(exc).__name__}: {exc}")
    raise typer.Exit(1)


def _run(job, scheduler, workers, threads_per_worker, description, timeout=10.0):
    from ..scale import connect
    from ..scale.common import ConfigMismatchError, JobInputError, PartitionFailedError

    try:
        with connect(scheduler, workers=workers, threads_per_worker=threads_per_worker, timeout=timeout) as client:
            with common.progress() as bar:
                task = bar.add_task(description, total=None)
                return job(client, lambda done, total: bar.update(task, completed=done, total=total))
    except (ConnectionError, ConfigMismatchError, JobInputError, PartitionFailedError, FileNotFoundError,
            ValueError) as exc:
        _fail(exc)


@app.command("encode")
def encode(
    items: Path = typer.Argument(..., help="Product catalogue: a Parquet file or a folder of Parquet files."),
    out: Path = common.out_option(..., "Output folder (vectors per partition + manifest.json)."),
    encoder: str = typer.Option("minilm", help="minilm, static (= minilm on the static backend), a model "
                                               "folder or a saved ONNX/static encoder folder."),
    backend: str = typer.Option("torch", help="torch, onnx or static (ignored for a saved encoder folder)."),
    precision: str = typer.Option("fp32", help="fp32, bf16, fp16 (torch) or int8 (onnx)."),
    codec: str | None = typer.Option(None, help="Also write a compressed copy: fp16, int8, pq64, binary..."),
    scheduler: str | None = typer.Option(None, help="Dask scheduler address; default: a local cluster."),
    workers: int = typer.Option(2, help="Worker processes of the local cluster."),
    threads_per_worker: int = typer.Option(1, help="Threads per worker, also each task's thread budget."),
    partition_rows: int = typer.Option(50_000, help="Rows per partition (one task each)."),
    retries: int = typer.Option(2, help="Times a failed partition is retried."),
    timeout: float = typer.Option(10.0, help="Seconds to wait for the scheduler at --scheduler."),
) -> None:
    """Encode a catalogue into item vectors as a Dask job; a rerun skips finished partitions."""
    from ..scale import EncoderSpec, encode_catalogue
    from ..scale.encode import worker_encoder

    if encoder.strip().lower() == "static":
        encoder, backend = "minilm", "static"
    try:
        spec = EncoderSpec(encoder, backend=backend, precision=precision, threads=threads_per_worker)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with console.status("loading the encoder (export / distillation on first use)"):
        try:
            worker_encoder(spec)  # fail fast on a bad name; build any export here once (encode reuses it)
        except (ValueError, FileNotFoundError) as exc:
            _fail(exc)
    manifest = _run(lambda client, progress: encode_catalogue(
        items, out, encoder=spec, codec=codec, partition_rows=partition_rows, client=client, retries=retries,
        progress=progress), scheduler, workers, threads_per_worker, "encoding partitions", timeout)
    run = manifest["last_run"]
    console.print(f"{manifest['rows']:,} items x {manifest['dim']} dims in {out}: "
                  f"{len(run['encoded'])} partitions encoded, {len(run['skipped'])} already done, "
                  f"{run['wall_s']:.1f} s")


@app.command("recommend")
def recommend(
    vectors: Path = typer.Argument(..., help="Output folder of `leanrec batch encode`."),
    events: Path = typer.Argument(..., help="Event log (Parquet: user_id, item_id, timestamp)."),
    out: Path = common.out_option(..., "Output folder (Parquet per user partition + manifest.json)."),
    k: int = common.k_option(10, "Recommendations per user."),
    half_life: float = typer.Option(8.0, help="History decay half-life in events (0: plain mean)."),
    index: str = typer.Option("exact", help="Index: exact, hnsw, ivfpq..."),
    scheduler: str | None = typer.Option(None, help="Dask scheduler address; default: a local cluster."),
    workers: int = typer.Option(2, help="Worker processes of the local cluster."),
    threads_per_worker: int = typer.Option(1, help="Threads per worker, also each task's thread budget."),
    partition_users: int = typer.Option(10_000, help="Users per partition (one task each)."),
    retries: int = typer.Option(2, help="Times a failed partition is retried."),
) -> None:
    """Top-k unseen items for every user, as a Dask job; a rerun skips finished partitions."""
    from ..scale import recommend_all

    manifest = _run(lambda client, progress: recommend_all(
        vectors, events, out, k=k, half_life=half_life or None, index=index, partition_users=partition_users,
        threads=threads_per_worker, client=client, retries=retries, progress=progress),
        scheduler, workers, threads_per_worker, "scoring user partitions")
    run = manifest["last_run"]
    console.print(f"top-{k} for {manifest['users']:,} users in {out}: {len(run['computed'])} partitions computed, "
                  f"{len(run['skipped'])} already done, {run['wall_s']:.1f} s")


@app.command("index")
def index(
    vectors: Path = typer.Argument(..., help="Output folder of `leanrec batch encode`."),
    out: Path = common.out_option(..., "Output folder (one saved index per shard + manifest.json)."),
    index: str = typer.Option("exact", help="Index per shard: exact, hnsw32-ef64, ivfpq..."),
    partitions_per_shard: int = typer.Option(1, help="Encode partitions per shard."),
    scheduler: str | None = typer.Option(None, help="Dask scheduler address; default: a local cluster."),
    workers: int = typer.Option(2, help="Worker processes of the local cluster."),
    threads_per_worker: int = typer.Option(1, help="Threads per worker, also each task's thread budget."),
    retries: int = typer.Option(2, help="Times a failed shard is retried."),
) -> None:
    """Build one index shard per range of item partitions, as a Dask job; a rerun skips finished shards."""
    from ..scale import build_index_shards

    manifest = _run(lambda client, progress: build_index_shards(
        vectors, out, index=index, partitions_per_shard=partitions_per_shard, threads=threads_per_worker,
        client=client, retries=retries, progress=progress), scheduler, workers, threads_per_worker, "building shards")
    run = manifest["last_run"]
    console.print(f"{len(manifest['shards'])} {index} shards in {out}: {len(run['built'])} built, "
                  f"{len(run['skipped'])} already done, {run['wall_s']:.1f} s")


@app.command("plan")
def plan(
    run: Path = typer.Argument(..., metavar="RUN", help="Output folder of a finished `leanrec batch encode` or "
                               "`leanrec batch recommend` run (its manifest.json holds the per-task measurements)."),
    items: str = typer.Option(..., help="Target catalogue size, e.g. 1M."),
    users: str | None = typer.Option(None, help="Target users (batch recommend; default: the profiled run's)."),
    start_s: float = typer.Option(0.0, help="Seconds the cluster takes to start (not in the manifest)."),
) -> None:
    """Predict a batch job's wall time and peak memory per worker at a target size from a smaller run.

    Same workers, threads and partition sizes as the profiled run; the laws are
    leanrec.cost.jobs's (partition rounds, per-worker load, scan ∝ items)."""
    import json

    from ..cost.jobs import job_profile, predict_job
    from ..cost.plan import parse_count
    from ..scale.common import read_manifest

    manifest = read_manifest(run)
    if manifest is None:
        raise typer.BadParameter(f"{run} holds no manifest.json of a leanrec.scale job", param_hint="RUN")
    try:
        prof = job_profile(manifest, start_s=start_s)
        pred = predict_job(prof, parse_count(items), parse_count(users) if users else None)
    except (ValueError, KeyError) as exc:
        raise typer.BadParameter(str(exc)) from None
    who = f" and {pred['n_users']:,} users" if "n_users" in pred else ""
    console.print(f"{pred['job']} at {pred['n_items']:,} items{who} on {pred['workers']} worker(s), from the run at "
                  f"{prof['n_items']:,} items ({prof['wall_s']:.1f} s, {prof['peak_rss_mb']:,.0f} MB peak per worker):")
    console.print(f"  wall time  {pred['wall_s']:,.1f} s   ({pred['laws']['wall_s']})", soft_wrap=True)
    console.print(f"  peak RSS   {pred['peak_rss_mb_per_worker']:,.0f} MB per worker   "
                  f"({pred['laws']['peak_rss_mb']})", soft_wrap=True)
    console.print_json(json.dumps({"profile": prof, "prediction": pred}))
