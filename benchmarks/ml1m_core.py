"""The core models on MovieLens-1M: the demo (warm and cold protocols) and the new-user ramp.

Runs, each as its own process, timed from outside (wall seconds, and the peak resident
memory of the biggest child process so far):

    leanrec demo --dataset ml-1m --out <work>/demo
    leanrec model ramp --dataset ml-1m --models popular,demographic,ease,tfidf,minilm,hybrid --out <work>/ramp

then writes ``ml1m_core.json`` (the demo's per-model parameters, test metrics and timings,
the ramp's rows, the commands, wall times, machine and versions) and ``ml1m_core.md`` (the
same as tables), every number read from the runs' own results.json and ramp.json.
ML-1M must be in the leanrec cache (``leanrec data fetch --dataset ml-1m``) or reachable.

    python benchmarks/ml1m_core.py [--results benchmarks/results] [--work /tmp/ml1m_core]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAMP_MODELS = "popular,demographic,ease,tfidf,minilm,hybrid"
#: the demo's test metrics shown in the tables (results.json keeps all of them)
COLUMNS = ("ndcg@10", "recall@10", "mrr@10", "ndcg@20", "recall@20", "auc", "coverage@10")


def run(args: list[str]) -> dict:
    """Run ``leanrec <args>`` (output passes through: the progress bar shows on a terminal)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "leanrec.cli", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(command, env=env, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {shlex.join(command)}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: kilobytes
    return {"command": "leanrec " + shlex.join(args), "wall_seconds": round(seconds, 1),
            "peak_rss_mb_children_so_far": round(peak_kb / 1024)}


def demo_table(results: dict) -> dict:
    """Per protocol, per model: chosen params, test metrics (all and strictly later), timings."""
    out: dict = {}
    for name, per_protocol in results["models"].items():
        for protocol, r in per_protocol.items():
            test = r["test"]
            out.setdefault(protocol, {})[name] = {
                "params": r["params"],
                "valid_ndcg@10": r["valid"]["ndcg@10"],
                "test": {k: v for k, v in test.items() if k != "strictly_later"},
                "test_strictly_later": test.get("strictly_later"),
                "fit_seconds": r["fit_seconds"], "score_seconds": r["score_seconds"],
                "tune_seconds": r["tune_seconds"],
            }
    return out


def markdown(report: dict, ramp_md: str) -> str:
    demo, ramp = report["demo"], report["ramp"]
    m = report["machine"]
    lines = [f"# Core models on MovieLens-1M ({report['measured_at']})", "",
             (f"{report['dataset']['n_users']:,} users, {report['dataset']['n_items']:,} items, "
              f"{report['dataset']['n_events']:,} events; seed 42, full ranking. Machine: {m['cpu_model']}, "
              f"{m['logical_cores']} logical cores, {m['ram_bytes'] / 2**30:.0f} GiB; numpy "
              f"{report['versions'].get('numpy')}, torch {report['versions'].get('torch')}."), "",
             "**Other jobs ran on the same 2 cores during these runs, so the wall times are upper bounds.**", "",
             "| run | command | wall time | peak RSS (largest child so far) |", "|---|---|---:|---:|"]
    for label, r in (("demo", demo["run"]), ("ramp", ramp["run"])):
        lines.append(f"| {label} | `{r['command']}` | {r['wall_seconds']:.0f} s ({r['wall_seconds'] / 60:.1f} min) "
                     f"| {r['peak_rss_mb_children_so_far']:,} MB |")
    lines += ["", (f"The demo's own clock (results.json `wall_seconds`): {demo['wall_seconds_reported']} s; the "
                   f"ramp's: {ramp['wall_seconds_reported']} s (both exclude start-up and loading the data)."), "",
              ("fit s is the final fit (on train+validation; the cold protocol's is its train), score s ranking every "
               "test user, tune s the validation grid. A data set keeps EASE's inverse per λ, so the hybrid's fit "
               "reuses the one its EASE part shares with the ease row's fit and excludes that inversion."), ""]
    for protocol, models in demo["tables"].items():
        split = demo["splits"][protocol]
        lines += [f"## Demo, {protocol} protocol — test ({split['test_users']:,} users"
                  + (f", {split['n_candidates']:,} cold candidate items" if split.get("n_candidates") else "")
                  + "; later = targets strictly after the user's previous event)", "",
                  "| model | chosen params | " + " | ".join(COLUMNS) + " | later ndcg@10 | later n | fit s | score s "
                  "| tune s |", "|---|---|" + "---:|" * (len(COLUMNS) + 5)]
        for name, r in models.items():
            later = r["test_strictly_later"] or {}
            params = " ".join(f"{k.split('__')[-1]}={v}" for k, v in r["params"].items()) or "–"
            lines.append(f"| {name} | {params} | " + " | ".join(f"{r['test'][c]:.4f}" for c in COLUMNS)
                         + f" | {later.get('ndcg@10', float('nan')):.4f} | {later.get('n_users', '–')} "
                         f"| {r['fit_seconds']:.2f} | {r['score_seconds']:.2f} | {r['tune_seconds']:.1f} |")
        lines.append("")
    body = ramp_md.split("\n", 2)[2] if ramp_md.startswith("# ") else ramp_md  # drop the ramp's own title
    lines += ["## New-user ramp", "", body.replace("\n## ", "\n### ").strip(), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--work", type=Path, default=None, help="Folder for the runs' outputs (default: a temp dir).")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ml1m_core-"))
    demo_run = run(["demo", "--dataset", "ml-1m", "--out", str(work / "demo")])
    ramp_run = run(["model", "ramp", "--dataset", "ml-1m", "--models", RAMP_MODELS, "--out", str(work / "ramp")])
    results = json.loads((work / "demo" / "results.json").read_text())
    ramp = json.loads((work / "ramp" / "ramp.json").read_text())

    from leanrec.cost.hardware import machine_info
    from leanrec.experiment import versions

    report = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "other jobs ran concurrently on the machine's 2 cores: wall times are upper bounds",
        "machine": machine_info(),
        "versions": versions(),
        "dataset": results["dataset"],
        "demo": {"run": demo_run, "wall_seconds_reported": results["wall_seconds"], "config": results["config"],
                 "splits": results["splits"], "embedding_cache": results["embedding_cache"],
                 "tables": demo_table(results)},
        "ramp": {"run": ramp_run, "wall_seconds_reported": ramp["wall_seconds"], "split": ramp["split"],
                 "models": ramp["models"], "rows": ramp["rows"]},
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "ml1m_core.json").write_text(json.dumps(report, indent=2, default=str))
    (args.results / "ml1m_core.md").write_text(markdown(report, (work / "ramp" / "ramp.md").read_text()))
    print(f"wrote {args.results / 'ml1m_core.json'} and {args.results / 'ml1m_core.md'} (runs in {work})")


if __name__ == "__main__":
    main()
