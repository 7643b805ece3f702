"""Encoding a generated catalogue: a 2-worker Dask LocalCluster against a single process.

Protocol: ``leanrec data synth`` (seed 42) writes N product titles (default 1M) as Parquet
parts; each run then encodes all of them with ``leanrec.scale.encode_catalogue`` into a
fresh folder, in a fresh Python process (so peak memory is the run's own):

* ``single`` — ``client=None``: the same partition function in this one process, 2 threads;
* ``cluster`` — a LocalCluster on 127.0.0.1 with 2 worker processes × 1 thread each.

Per run: wall time (job only: after the driver has loaded the encoder, the cluster's start
included for ``cluster``), items/s, peak RSS of the driver and of each worker
(``ru_maxrss``). The two runs' vectors are compared bitwise. Results go to
``benchmarks/results/scale_encode.{json,md}`` (merged per encoder, so the static and the
ONNX int8 runs can be made separately).

    python benchmarks/scale_encode.py --encoder static [--items 1M]
    python benchmarks/scale_encode.py --encoder onnx-int8 --items 1M     # hours on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

OUT = Path(__file__).parent / "results"
DATA = Path(os.environ.get("LEANREC_BENCH_DATA", "/tmp/leanrec-bench"))
ENCODERS = {"static": {"encoder": "minilm", "backend": "static", "precision": "fp32"},
            "onnx-int8": {"encoder": "minilm", "backend": "onnx", "precision": "int8"}}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(mode: str, encoder: str, items: Path, out: Path) -> dict:
    """One measured run (called in a fresh process)."""
    from leanrec.scale import connect, encode_catalogue
    from leanrec.scale.encode import EncoderSpec, worker_encoder

    spec = EncoderSpec(ENCODERS[encoder]["encoder"], backend=ENCODERS[encoder]["backend"],
                       precision=ENCODERS[encoder]["precision"], threads=2 if mode == "single" else 1)
    worker_encoder(spec)  # the driver's load (model files, ONNX export) is not the job
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    if mode == "single":
        manifest = encode_catalogue(items, out, encoder=spec, client=None)
        workers = {}
    else:
        with connect(None, workers=2, threads_per_worker=1) as client:
            manifest = encode_catalogue(items, out, encoder=spec, client=client)
            workers = client.run(_peak_mb)
    wall = time.perf_counter() - t0
    n = sum(p["stop"] - p["start"] for p in manifest["partitions"])
    return {"mode": mode, "encoder": encoder, "items": n, "wall_s": round(wall, 1),
            "items_per_s": round(n / wall, 1) if n else None, "driver_peak_rss_mb": round(_peak_mb(), 1),
            "worker_peak_rss_mb": sorted(round(v, 1) for v in workers.values()),
            "partitions": len(manifest.get("partitions", []))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", choices=sorted(ENCODERS), default="static")
    ap.add_argument("--items", default="1M")
    ap.add_argument("--one", nargs=3, metavar=("MODE", "ITEMS", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], args.encoder, Path(args.one[1]), Path(args.one[2]))))
        return
    import numpy as np

    from leanrec.cost.plan import parse_count
    from leanrec.data.synth_scale import write_synthetic
    from leanrec.scale.encode import load_vectors

    n = parse_count(args.items)
    data = DATA / f"synth-{n}"
    if not (data / "manifest.json").exists():
        write_synthetic(data, n, n_users=max(n // 10, 1), n_events=max(n, 1), seed=42)
    runs = []
    for mode in ("single", "cluster"):
        out = DATA / f"vectors-{args.encoder}-{mode}-{n}"
        proc = subprocess.run([sys.executable, __file__, "--encoder", args.encoder, "--one", mode,
                               str(data / "items"), str(out)], capture_output=True, text=True, check=True)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    a = load_vectors(DATA / f"vectors-{args.encoder}-single-{n}")
    b = load_vectors(DATA / f"vectors-{args.encoder}-cluster-{n}")
    same = bool(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]))
    record = {"protocol": f"{n:,} generated product titles (leanrec data synth, seed 42); single process "
                          "(2 threads) vs LocalCluster 2 workers × 1 thread; fresh process per run",
              "runs": runs, "bitwise_equal": same, "speedup": round(runs[0]["wall_s"] / runs[1]["wall_s"], 2),
              "versions": {"python": platform.python_version(), "dask": metadata.version("dask"),
                           "leanrec": metadata.version("leanrec"), "onnxruntime": metadata.version("onnxruntime")},
              "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    OUT.mkdir(exist_ok=True)
    path = OUT / "scale_encode.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results[f"{args.encoder}-{n}"] = record
    path.write_text(json.dumps(results, indent=2))
    lines = ["# Encoding a generated catalogue: 2-worker LocalCluster vs one process", ""]
    for key, rec in results.items():
        lines += [f"## {key} — {rec['protocol']}", "",
                  f"{rec['date']} · {rec['cpus']} CPUs · dask {rec['versions']['dask']} · "
                  f"bitwise equal: {rec['bitwise_equal']} · speed-up {rec['speedup']}×", "",
                  "| run | items | wall s | items/s | driver peak RSS MB | worker peak RSS MB |",
                  "|---|---:|---:|---:|---:|---|"]
        for r in rec["runs"]:
            lines.append(f"| {r['mode']} | {r['items']:,} | {r['wall_s']} | {r['items_per_s']:,} | "
                         f"{r['driver_peak_rss_mb']} | {', '.join(map(str, r['worker_peak_rss_mb'])) or '–'} |")
        lines.append("")
    (OUT / "scale_encode.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
