"""Old commit against the working tree, side by side on one machine, runs alternating.

    python benchmarks/side_by_side.py --old 4acc6d7             # explain cost, demo, service load
    python benchmarks/side_by_side.py --old 4acc6d7 --only explain

Why: a refactor promises "no slowdown", and two figures measured on different days or
machines cannot show that. This checks the old commit out into a temporary git worktree
and runs the same benchmark from each tree with its own code on the path (``PYTHONPATH``),
in the order old, new, new, old, … so that a drift of the machine hits both sides alike:

* ``explain`` — ``benchmarks/explain_cost.py`` (ML-100K, 50 users: ``recommend`` and
  ``explain_items`` p50 per model), ``--rounds`` times each;
* ``demo`` — ``leanrec demo`` wall time on a warm cache (the data set and embeddings cached),
  and whether both sides' ``results.json`` metrics are equal to the last digit;
* ``load`` — ``benchmarks/service_load.py`` (the real server under wrk, one store both sides
  share) at ``--items``/``--users``: requests/s and p50/p99.

Writes ``benchmarks/results/side_by_side.{json,md}``: every run, medians per side and the
new/old ratio, with the machine, versions and commits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


def _run(tree: Path, args: list[str], log: Path, timeout: float) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.run([sys.executable, *args], cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {tree} (see {log})")
    return seconds


def _order(rounds: int) -> list[str]:
    return [side for r in range(rounds) for side in (("old", "new") if r % 2 == 0 else ("new", "old"))]


def explain(trees: dict, work: Path, rounds: int) -> dict:
    runs = []
    for k, side in enumerate(_order(rounds)):
        tree = trees[side]
        _run(tree, ["benchmarks/explain_cost.py"], work / f"explain-{k}-{side}.log", 1800)
        doc = json.loads((tree / "benchmarks" / "results" / "explain_cost.json").read_text())
        runs.append({"side": side, "rows": doc["rows"]})
    return {"runs": runs}


def demo(trees: dict, work: Path, rounds: int) -> dict:
    runs = []
    for k, side in enumerate(_order(rounds)):
        out = work / f"demo-{k}-{side}"
        seconds = _run(trees[side], ["-m", "leanrec.cli", "demo", "--out", str(out)], work / f"demo-{k}-{side}.log",
                       3600)
        metrics = json.loads((out / "results.json").read_text())
        runs.append({"side": side, "wall_s": round(seconds, 2), "out": str(out),
                     "metrics": {m: {p: {k: r.get(k) for k in ("params", "valid", "test")}
                                     for p, r in v.items() if isinstance(r, dict)}
                                 for m, v in metrics["models"].items()}})
    first = {side: next(r for r in runs if r["side"] == side) for side in ("old", "new")}
    return {"runs": runs, "metrics_equal": first["old"]["metrics"] == first["new"]["metrics"]}


def load(trees: dict, work: Path, rounds: int, items: int, users: int, duration: float) -> dict:
    runs = []
    store = work / "service-load-store"
    for k, side in enumerate(_order(rounds)):
        out = work / f"load-{k}-{side}"
        _run(trees[side], ["benchmarks/service_load.py", "--items", str(items), "--users", str(users),
                           "--duration", str(duration), "--warmup", "5", "--sweep", "10", "--cold-duration", "0",
                           "--curve", "", "--work", str(store), "--out", str(out)], work / f"load-{k}-{side}.log",
             3600)
        doc = json.loads(out.with_suffix(".json").read_text())
        measured = doc["phases"]["measured"]
        runs.append({"side": side, "requests_per_s": measured["summary"]["requests_per_s"],
                     "p50_ms": measured["summary"]["latency_ms"]["p50"],
                     "p99_ms": measured["summary"]["latency_ms"]["p99"],
                     "errors": measured["summary"]["errors_total"],
                     "server_p50_ms": measured["server_side"]["p50_ms"],
                     "server_p99_ms": measured["server_side"]["p99_ms"], "report": str(out.with_suffix(".json"))})
    return {"runs": runs}


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, help="the commit to compare against (a git revision)")
    ap.add_argument("--only", choices=("explain", "demo", "load"), action="append")
    ap.add_argument("--rounds", type=int, default=2, help="runs per side (alternating)")
    ap.add_argument("--items", type=int, default=30_000)
    ap.add_argument("--users", type=int, default=8_000)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "side_by_side")
    args = ap.parse_args()
    parts = args.only or ["explain", "demo", "load"]
    old_rev = subprocess.run(["git", "rev-parse", args.old], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    new_rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="leanrec-sbs-"))
    old_tree = work / "old"
    subprocess.run(["git", "worktree", "add", "--detach", str(old_tree), old_rev], cwd=ROOT, check=True,
                   capture_output=True)
    trees = {"old": old_tree, "new": ROOT}
    result = {"command": " ".join(sys.argv), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "old": old_rev, "new": f"{new_rev} (working tree)", "order": "old, new, new, old, ...",
              "python": platform.python_version()}
    from leanrec.cost.hardware import machine_info

    info = machine_info()  # CPU model, instruction-set flags, cores, versions
    result["machine"] = {"cpu_model": info["cpu_model"], "cores": info["logical_cores"],
                         "flags": [f for f, on in info["flags"].items() if on], "packages": info["packages"]}
    try:
        if "explain" in parts:
            result["explain"] = explain(trees, work, args.rounds)
        if "demo" in parts:
            result["demo"] = demo(trees, work, args.rounds)
        if "load" in parts:
            result["load"] = load(trees, work, args.rounds, args.items, args.users, args.duration)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, capture_output=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=str))
    args.out.with_suffix(".md").write_text(report(result) + "\n")
    print(report(result))


def report(result: dict) -> str:
    lines = [f"# Side by side: {result['old'][:10]} (old) against {result['new'][:10]} (new)", "",
             f"{result['date']} · runs alternate {result['order']} · python {result['python']} · "
             f"{result['machine']['cpu_model']} ({result['machine']['cores']} cores; flags "
             f"{' '.join(result['machine']['flags'])})", ""]
    if "explain" in result:
        lines += ["## Explanation cost (benchmarks/explain_cost.py), p50 ms, median over runs", "",
                  "| model | recommend old | recommend new | explain old | explain new | explain new/old |",
                  "|---|---:|---:|---:|---:|---:|"]
        runs = result["explain"]["runs"]
        models = [r["model"] for r in runs[0]["rows"]]
        for m in models:
            def med(side, key):
                return _median([next(x[key] for x in r["rows"] if x["model"] == m) for r in runs if r["side"] == side])
            ro, rn = med("old", "recommend_ms_p50"), med("new", "recommend_ms_p50")
            eo, en = med("old", "explain_ms_p50"), med("new", "explain_ms_p50")
            lines.append(f"| {m} | {ro} | {rn} | {eo} | {en} | {en / eo:.2f} |")
        lines.append("")
    if "demo" in result:
        d = result["demo"]
        walls = {s: [r["wall_s"] for r in d["runs"] if r["side"] == s] for s in ("old", "new")}
        lines += ["## `leanrec demo` on a warm cache, wall seconds", "",
                  f"old {walls['old']} (median {_median(walls['old'])}) · new {walls['new']} (median "
                  f"{_median(walls['new'])}) · new/old {_median(walls['new']) / _median(walls['old']):.3f} · "
                  f"test metrics equal to the last digit: {d['metrics_equal']}", ""]
    if "load" in result:
        runs = result["load"]["runs"]
        lines += ["## Service under load (benchmarks/service_load.py)", "",
                  "| side | requests/s | p50 ms | p99 ms | server p50 ms | server p99 ms | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in runs:
            lines.append(f"| {r['side']} | {r['requests_per_s']} | {r['p50_ms']} | {r['p99_ms']} | "
                         f"{r['server_p50_ms']} | {r['server_p99_ms']} | {r['errors']} |")
        for key in ("requests_per_s", "p99_ms", "server_p99_ms"):
            o = _median([r[key] for r in runs if r["side"] == "old"])
            n = _median([r[key] for r in runs if r["side"] == "new"])
            if o and n:
                lines.append(f"\n{key}: median old {o}, new {n}, new/old {n / o:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
