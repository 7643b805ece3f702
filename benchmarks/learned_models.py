"""The learned models on MovieLens-100K: quality, what each beats, and quality per CPU-minute.

Runs ``leanrec demo --models all`` (both protocols, seed 42; the encoder fine-tunes are
cached, so ``--runs 2`` re-trains every sequential model and checks the numbers repeat),
then writes, from its results.json:

* each learned model against the frozen-vector baseline it replaces, on validation and
  test (minilm-ft, projection, attention, sasrec vs the frozen MiniLM content model;
  learned-hybrid vs the fixed hybrid);
* quality gained per CPU-minute of training: (test NDCG@10 − frozen MiniLM's) / CPU
  minutes of the training that produced the scored model, with wall seconds beside it;
* a bf16-autocast vs fp32 measurement of the SASRec training step, side by side in one
  process (median epoch seconds over the same epochs, and the validation NDCG reached).

    python benchmarks/learned_models.py [--runs 2] [--out benchmarks/results/learned_models]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = {"minilm-ft": "minilm", "projection": "minilm", "attention": "minilm", "sasrec": "minilm",
            "learned-hybrid": "hybrid"}


def run_demo(out: Path) -> tuple[dict, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "leanrec.cli", "demo", "--models", "all", "--out", str(out)],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"demo failed:\n{proc.stderr[-3000:]}")
    return json.loads((out / "results.json").read_text()), time.perf_counter() - t0


def cpu_seconds(run: dict) -> float | None:
    training = run.get("training") or {}
    value = training.get("train_cpu_seconds")
    return float(value) if value is not None else None


def compare(results: dict) -> dict:
    out: dict = {}
    models = results["models"]
    for protocol in ("warm", "cold"):
        rows = []
        frozen = models["minilm"][protocol]["test"]["ndcg@10"]
        for name, base in BASELINE.items():
            run, ref = models[name][protocol], models[base][protocol]
            cpu = cpu_seconds(run)
            gain = run["test"]["ndcg@10"] - frozen
            rows.append({
                "model": name, "baseline": base,
                "valid_ndcg@10": run["valid"]["ndcg@10"], "baseline_valid_ndcg@10": ref["valid"]["ndcg@10"],
                "test_ndcg@10": run["test"]["ndcg@10"], "baseline_test_ndcg@10": ref["test"]["ndcg@10"],
                "beats_on_valid": run["valid"]["ndcg@10"] > ref["valid"]["ndcg@10"],
                "beats_on_test": run["test"]["ndcg@10"] > ref["test"]["ndcg@10"],
                "train_wall_seconds": (run.get("training") or {}).get("train_seconds"),
                "train_cpu_seconds": cpu,
                "gain_over_frozen_minilm": gain,
                "gain_per_cpu_minute": gain / (cpu / 60) if cpu else None,
            })
        best = max(models, key=lambda m: models[m][protocol]["test"]["ndcg@10"])
        out[protocol] = {"rows": rows, "best_model": best, "best_test_ndcg@10": models[best][protocol]["test"]["ndcg@10"]}
    return out


def precision_probe(epochs: int = 3) -> dict:
    """SASRec (ID embeddings on) for a few epochs in fp32 and in bf16 autocast, same seed."""
    from leanrec.data import load
    from leanrec.data.split import make_split
    from leanrec.models.sequential import SequentialRecommender

    split = make_split(load("ml-100k"), "warm")
    flags = open("/proc/cpuinfo").read().split()
    out = {"epochs": epochs, "cpu_flags": {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")}}
    for precision in ("fp32", "bf16"):
        model = SequentialRecommender(pooling="sasrec", item_ids=True, max_epochs=epochs, patience=epochs,
                                      precision=precision, threads=1).fit(split.train)
        hist = model.training_["history"]
        per_epoch = [b["seconds"] - a["seconds"] for a, b in zip(hist, hist[1:])]
        out[precision] = {"median_epoch_seconds": round(statistics.median(per_epoch), 3),
                          "valid_ndcg@10_after": round(hist[-1]["valid_ndcg@10"], 4),
                          "train_loss_after": round(hist[-1]["train_loss"], 4)}
    out["bf16_over_fp32_time"] = round(out["bf16"]["median_epoch_seconds"] / out["fp32"]["median_epoch_seconds"], 3)
    return out


def markdown(report: dict) -> str:
    lines = [f"# Learned models on MovieLens-100K ({report['measured_at']})", "",
             f"`leanrec demo --models all`, seed {report['seed']}, full ranking, both protocols; "
             f"{report['machine']['cpus']} CPUs; torch {report['versions'].get('torch')}, "
             f"sentence-transformers {report['versions'].get('sentence-transformers')}, "
             f"transformers {report['versions'].get('transformers')}. Demo wall time "
             f"{report['runs'][0]['wall_seconds'] / 60:.1f} min.", ""]
    for protocol, block in report["comparison"].items():
        lines += [f"## {protocol} protocol (best: {block['best_model']}, test NDCG@10 {block['best_test_ndcg@10']:.4f})",
                  "", "| model | replaces | valid NDCG@10 | baseline valid | test NDCG@10 | baseline test | beats (valid/test) "
                  "| train wall s | train CPU s | test gain over frozen MiniLM | gain per CPU-minute |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in block["rows"]:
            per_min = f"{r['gain_per_cpu_minute']:+.5f}" if r["gain_per_cpu_minute"] is not None else "–"
            wall = f"{r['train_wall_seconds']:.0f}" if r["train_wall_seconds"] is not None else "–"
            cpu = f"{r['train_cpu_seconds']:.0f}" if r["train_cpu_seconds"] is not None else "–"
            lines.append(f"| {r['model']} | {r['baseline']} | {r['valid_ndcg@10']:.4f} | {r['baseline_valid_ndcg@10']:.4f} "
                         f"| {r['test_ndcg@10']:.4f} | {r['baseline_test_ndcg@10']:.4f} "
                         f"| {'yes' if r['beats_on_valid'] else 'NO'}/{'yes' if r['beats_on_test'] else 'NO'} "
                         f"| {wall} | {cpu} | {r['gain_over_frozen_minilm']:+.4f} | {per_min} |")
        lines.append("")
    if len(report["runs"]) > 1:
        lines += [f"Second run identical: **{report['same_numbers']}** "
                  f"(second run {report['runs'][1]['wall_seconds'] / 60:.1f} min, fine-tuned encoders from the cache).", ""]
    p = report.get("precision")
    if p:
        lines += ["## bf16 autocast vs fp32 (SASRec training, warm protocol, 1 thread, same seed)", "",
                  f"CPU flags: {p['cpu_flags']}", "", "| precision | median epoch s | valid NDCG@10 after "
                  f"{p['epochs']} epochs | train loss |", "|---|---|---|---|"]
        for prec in ("fp32", "bf16"):
            lines.append(f"| {prec} | {p[prec]['median_epoch_seconds']} | {p[prec]['valid_ndcg@10_after']} "
                         f"| {p[prec]['train_loss_after']} |")
        lines += ["", f"bf16 / fp32 time: {p['bf16_over_fp32_time']}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="2 = run the demo twice and compare the numbers")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "learned_models")
    parser.add_argument("--keep", type=Path, default=None, help="keep the demo output folders here")
    parser.add_argument("--no-precision", action="store_true", help="skip the bf16 vs fp32 probe")
    args = parser.parse_args()
    from leanrec.experiment import versions

    runs, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        for k in range(args.runs):
            res, seconds = run_demo(base / f"run{k + 1}")
            results.append(res)
            runs.append({"wall_seconds": round(seconds, 1), "results_wall_seconds": res["wall_seconds"]})
    report = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(), "seed": results[0]["seed"], "runs": runs,
        "comparison": compare(results[0]),
        "test_ndcg@10": {m: {p: r["test"]["ndcg@10"] for p, r in per.items()} for m, per in results[0]["models"].items()},
        "valid_ndcg@10": {m: {p: r["valid"]["ndcg@10"] for p, r in per.items()} for m, per in results[0]["models"].items()},
    }
    if len(results) > 1:
        report["same_numbers"] = all(results[0]["models"][m][p]["test"] == results[1]["models"][m][p]["test"]
                                     for m in results[0]["models"] for p in results[0]["models"][m])
    if not args.no_precision:
        report["precision"] = precision_probe()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
