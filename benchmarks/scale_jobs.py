"""The planner's prediction of the batch jobs at 1M items from a 100k-item profile, against measurement.

    python benchmarks/scale_jobs.py                       # static encode + recommend-all, 100k -> 1M
    python benchmarks/scale_jobs.py --encoder onnx-int8 --jobs encode --measure-target no   # predict only

Protocol. ``leanrec data synth`` (seed 42) writes a 100k-item and a 1M-item catalogue, each
with 100k users and 10M events (the same users and activity; items differ in number). For
each job (``encode`` with the chosen encoder, ``recommend-all`` top-10 over the static
vectors, exact index, seen items excluded) and mode (``single``: this process, 2 threads;
``cluster``: a LocalCluster on 127.0.0.1, 2 workers × 1 thread), a fresh Python process

1. runs the job on the 100k-item data; its manifest's per-task measurements, the cluster's
   start and the workers' idle RSS become the profile (:func:`leanrec.cost.jobs.job_profile`);
2. runs it on the 1M-item data (unless ``--measure-target no``) and records wall time and
   peak RSS per worker.

:func:`leanrec.cost.jobs.predict_job` then predicts the 1M run from the 100k profile alone,
and the table puts prediction and measurement side by side (error = predicted / measured − 1;
the target is within ±25 %). Results: ``benchmarks/results/scale_jobs.{json,md}`` (merged
per encoder and job, so runs can be made separately).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

OUT = Path(__file__).parent / "results"
DATA = Path(os.environ.get("LEANREC_BENCH_DATA", "/tmp/leanrec-bench"))
ENCODERS = {"static": {"backend": "static", "precision": "fp32"},
            "onnx-int8": {"backend": "onnx", "precision": "int8"}}


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def synth(n_items: int, n_users: int, n_events: int) -> Path:
    from leanrec.data.synth_scale import write_synthetic

    folder = DATA / f"synth-{n_items}-{n_users}-{n_events}"
    if not (folder / "manifest.json").exists():
        _log(f"writing {folder}")
        write_synthetic(folder, n_items, n_users, n_events, seed=42)
    return folder


def run_one(job: str, mode: str, encoder: str, data: Path, out: Path, vectors: Path | None) -> dict:
    """One measured run, in a fresh process (so peak RSS is the run's own)."""
    from leanrec.scale import connect, encode_catalogue, recommend_all
    from leanrec.scale.common import process_stats
    from leanrec.scale.encode import EncoderSpec, worker_encoder

    shutil.rmtree(out, ignore_errors=True)
    threads = 2 if mode == "single" else 1
    spec = None
    if job == "encode":
        spec = EncoderSpec("minilm", threads=threads, **ENCODERS[encoder])
        worker_encoder(spec)  # the driver's load (model files, ONNX export) is not the job
    driver_before = process_stats()["rss_mb"]
    t0 = time.perf_counter()

    def go(client):
        if job == "encode":
            return encode_catalogue(data / "items", out, encoder=spec, client=client)
        return recommend_all(vectors, data / "events", out, k=10, index="exact", threads=threads, client=client)

    if mode == "single":
        manifest = go(None)
        start_s, idle, workers = 0.0, driver_before, {}
    else:
        with connect(None, workers=2, threads_per_worker=1) as client:
            start_s = time.perf_counter() - t0
            idle = max(s["rss_mb"] for s in client.run(process_stats).values())
            manifest = go(client)
            workers = {str(k): v["peak_rss_mb"] for k, v in client.run(process_stats).items()}
    wall = time.perf_counter() - t0
    driver_peak = process_stats()["peak_rss_mb"]
    from leanrec.cost.jobs import job_profile

    n_users = manifest.get("users")
    profile = job_profile(manifest, workers=1 if mode == "single" else 2, start_s=start_s, idle_rss_mb=idle,
                          driver=None if mode == "single" else {"before_mb": driver_before, "peak_mb": driver_peak},
                          n_users=n_users)
    peak = driver_peak if mode == "single" else max(workers.values())
    return {"job": job, "mode": mode, "encoder": encoder if job == "encode" else "static (vectors)",
            "n_items": profile["n_items"], "n_users": n_users, "wall_s": round(wall, 2),
            "peak_rss_mb_per_worker": round(peak, 1), "driver_peak_rss_mb": round(driver_peak, 1),
            "worker_peak_rss_mb": sorted(workers.values()), "profile": profile}


def _sub(job: str, mode: str, encoder: str, data: Path, out: Path, vectors: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--one", job, mode, encoder, str(data), str(out), str(vectors or "")]
    _log(f"{job} {mode} {encoder} on {data.name}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    _log(f"  wall {rec['wall_s']} s, peak {rec['peak_rss_mb_per_worker']} MB per worker")
    return rec


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", choices=sorted(ENCODERS), default="static")
    ap.add_argument("--jobs", default="encode,recommend-all")
    ap.add_argument("--modes", default="single,cluster")
    ap.add_argument("--profile-items", default="100k")
    ap.add_argument("--items", default="1M")
    ap.add_argument("--users", default="100k")
    ap.add_argument("--events", default="10M")
    ap.add_argument("--measure-target", choices=("yes", "no"), default="yes")
    ap.add_argument("--one", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        job, mode, encoder, data, out, vectors = args.one
        print(json.dumps(run_one(job, mode, encoder, Path(data), Path(out), Path(vectors) if vectors else None)))
        return
    from leanrec.cost.jobs import predict_job
    from leanrec.cost.plan import parse_count

    t_all = time.perf_counter()
    n0, n1 = parse_count(args.profile_items), parse_count(args.items)
    users, events = parse_count(args.users), parse_count(args.events)
    sizes = {"profile": (n0, synth(n0, users, events))}
    if args.measure_target == "yes":
        sizes["target"] = (n1, synth(n1, users, events))
    path = OUT / "scale_jobs.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for job in args.jobs.split(","):
        for mode in args.modes.split(","):
            runs = {}
            for which, (n, data) in sizes.items():
                vectors = None
                if job == "recommend-all":  # the static vectors of this catalogue, encoded once
                    vectors = DATA / f"jobs-vectors-static-{n}"
                    if not (vectors / "manifest.json").exists():
                        _sub("encode", "single", "static", data, vectors, None)
                out = DATA / f"jobs-out-{job}-{args.encoder if job == 'encode' else 'static'}-{mode}-{n}"
                runs[which] = _sub(job, mode, args.encoder, data, out, vectors)
                if job == "encode" and (which == "profile" or args.measure_target == "no") \
                        and out != DATA / f"jobs-vectors-static-{n}":
                    shutil.rmtree(out, ignore_errors=True)  # kept only for the bitwise check below
            pred = predict_job(runs["profile"]["profile"], n1, users)
            rec = {"job": job, "mode": mode, "encoder": args.encoder if job == "encode" else "static vectors",
                   "profile_items": n0, "target_items": n1, "users": users, "events": events,
                   "profile_run": runs["profile"], "prediction": pred, "measured": runs.get("target"),
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
                   "versions": {"python": platform.python_version(), "dask": metadata.version("dask"),
                                "numpy": metadata.version("numpy"), "onnxruntime": metadata.version("onnxruntime"),
                                "leanrec": metadata.version("leanrec")}}
            if rec["measured"]:
                m = rec["measured"]
                key = "peak_rss_mb_per_worker"
                rec["error"] = {"wall_s": pred["wall_s"] / m["wall_s"] - 1, key: pred[key] / m[key] - 1}
            if rec["measured"] and job == "encode":
                rec["measured"]["items_per_s"] = round(n1 / rec["measured"]["wall_s"], 1)
            results[f"{job}-{rec['encoder']}-{mode}"] = rec
            OUT.mkdir(exist_ok=True)
            path.write_text(json.dumps(results, indent=1))
            (OUT / "scale_jobs.md").write_text(report(results))
        if job == "encode" and args.measure_target == "yes":
            _compare_target_vectors(results, args.encoder, n1, args.modes.split(","))
            path.write_text(json.dumps(results, indent=1))
            (OUT / "scale_jobs.md").write_text(report(results))
    _log(f"done in {time.perf_counter() - t_all:.0f} s")
    print((OUT / "scale_jobs.md").read_text())


def _compare_target_vectors(results: dict, encoder: str, n: int, modes: list[str]) -> None:
    """Single-process and cluster vectors of the target catalogue, compared bitwise, then removed (GBs at 1M)."""
    import numpy as np

    from leanrec.scale.encode import load_vectors

    folders = {m: DATA / f"jobs-out-encode-{encoder}-{m}-{n}" for m in modes}
    if set(modes) >= {"single", "cluster"} and all((f / "manifest.json").exists() for f in folders.values()):
        (ia, va), (ib, vb) = load_vectors(folders["single"]), load_vectors(folders["cluster"])
        same = bool(np.array_equal(ia, ib) and np.array_equal(va, vb))
        for m in ("single", "cluster"):
            results[f"encode-{encoder}-{m}"]["bitwise_equal_single_cluster"] = same
        _log(f"  single and cluster vectors bitwise equal: {same}")
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)


def report(results: dict) -> str:
    lines = ["# Batch jobs at 1M items: the planner's prediction from a 100k-item profile vs measurement", "",
             "`python benchmarks/scale_jobs.py` · data: `leanrec data synth` seed 42, 100k users, 10M events · "
             "single = one process, 2 threads; cluster = LocalCluster 2 workers × 1 thread (start included) · "
             "error = predicted / measured − 1 (target ±25 %)", "",
             "| job | mode | profile (100k) wall s | predicted wall s | measured wall s | error | "
             "predicted peak MB/worker | measured peak MB/worker | error |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for rec in results.values():
        p, m, e = rec["prediction"], rec.get("measured"), rec.get("error")
        name = f"{rec['job']} ({rec['encoder']})"
        lines.append(
            f"| {name} | {rec['mode']} | {rec['profile_run']['wall_s']:,.1f} | {p['wall_s']:,.1f} | "
            f"{m['wall_s']:,.1f} | {e['wall_s']:+.1%} | {p['peak_rss_mb_per_worker']:,.0f} | "
            f"{m['peak_rss_mb_per_worker']:,.0f} | {e['peak_rss_mb_per_worker']:+.1%} |" if m else
            f"| {name} | {rec['mode']} | {rec['profile_run']['wall_s']:,.1f} | {p['wall_s']:,.1f} | not run | – | "
            f"{p['peak_rss_mb_per_worker']:,.0f} | not run | – |")
    enc = [r for r in results.values() if r["job"] == "encode" and r.get("measured")]
    if enc:
        lines += ["", "Encoding throughput at the target size (items / measured wall time, start included):", ""]
        for rec in enc:
            m = rec["measured"]
            same = rec.get("bitwise_equal_single_cluster")
            lines.append(f"- {rec['encoder']}, {rec['mode']}: {m['n_items']:,} items in {m['wall_s']:,.1f} s = "
                         f"{m['n_items'] / m['wall_s']:,.0f} items/s, peak {m['peak_rss_mb_per_worker']:,.0f} MB "
                         "per worker" + ("" if same is None else f"; single and cluster vectors bitwise equal: {same}"))
    lines += ["", "Runs (date, versions):", ""]
    for key, rec in results.items():
        lines.append(f"- {key}: {rec['date']}, {rec['cpus']} CPUs, dask {rec['versions']['dask']}, numpy "
                     f"{rec['versions']['numpy']}, onnxruntime {rec['versions']['onnxruntime']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
