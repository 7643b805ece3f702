"""Wall time of `leanrec demo` on a cold cache (first run) and a warm one (second run).

The issue's budget: first run <= 10 minutes, second run <= 3 minutes on a 2-core machine.
Both runs use one fresh cache folder, so the first one really fetches ML-100K and encodes
the catalogue, and the second one shows what the data and embedding caches save.

    python benchmarks/demo_time.py [--out benchmarks/results/demo_time.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(cache: Path, out: Path) -> dict:
    env = {**os.environ, "LEANREC_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "leanrec.cli", "demo", "--out", str(out)],
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"demo failed:\n{proc.stderr[-3000:]}")
    results = json.loads((out / "results.json").read_text())
    return {"wall_seconds": round(seconds, 1), "embedding_cache": results["embedding_cache"],
            "hybrid_warm_ndcg@10": results["models"]["hybrid"]["warm"]["test"]["ndcg@10"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "demo_time.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        first = run_once(cache, Path(tmp) / "first")
        second = run_once(cache, Path(tmp) / "second")
    from leanrec.experiment import versions

    report = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(),
        "first_run": first,
        "second_run": second,
        "second_over_first": round(second["wall_seconds"] / first["wall_seconds"], 3),
        "same_numbers": first["hybrid_warm_ndcg@10"] == second["hybrid_warm_ndcg@10"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
