"""bf16 autocast against fp32 for training the sequence models, side by side on this CPU.

    python benchmarks/bf16_training.py [--epochs 6] [--rounds 2]

Trains the ID-only SASRec and the text+ID SASRec on the ML-100K warm split for a fixed
number of epochs in fp32 and in bf16 (``precision="bf16"``: torch CPU autocast on the
forward pass, the softmax in float32), alternating precisions over ``rounds`` so that
machine noise hits both alike, one torch thread. Reports the median seconds per epoch,
their ratio, the internal-validation NDCG@10 reached after the epochs and the peak RSS,
with the CPU model and its bf16/AMX flags: bf16 only pays where the CPU has AVX512-BF16 or
AMX; elsewhere it is emulated and slower. Writes ``benchmarks/results/bf16_training.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {
    "sasrec-id": {"use_text": False, "item_ids": True, "lr": 1e-3, "dropout": 0.2},
    "sasrec": {"encoder": "all-MiniLM-L6-v2", "item_ids": True, "id_dropout": 0.0, "lr": 1e-3},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "bf16_training")
    args = ap.parse_args()
    from leanrec.cost.hardware import machine_info
    from leanrec.data import load
    from leanrec.data.split import make_split
    from leanrec.experiment import versions
    from leanrec.models.sequential import SequentialRecommender

    split = make_split(load("ml-100k"), "warm")
    runs: dict = {m: {"fp32": [], "bf16": []} for m in MODELS}
    for r in range(args.rounds):
        for name, params in MODELS.items():
            for precision in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
                print(f"round {r + 1}/{args.rounds}: {name} {precision}", flush=True)
                t0 = time.perf_counter()
                model = SequentialRecommender(precision=precision, max_epochs=args.epochs, patience=args.epochs + 1,
                                              time_budget_s=1e9, threads=1, seed=42, **params).fit(split.train)
                hist = [h for h in model.training_["history"] if h["epoch"] > 0]
                per_epoch = [b["cpu_seconds"] - a["cpu_seconds"] for a, b in zip([{"cpu_seconds": 0.0}] + hist, hist)]
                runs[name][precision].append({"cpu_s_per_epoch": per_epoch, "wall_s": time.perf_counter() - t0,
                                              "valid_ndcg@10": [h["valid_ndcg@10"] for h in hist]})
    summary = {}
    for name, by in runs.items():
        med = {p: statistics.median(x for run in by[p] for x in run["cpu_s_per_epoch"]) for p in by}
        summary[name] = {"median_cpu_s_per_epoch": med, "bf16_over_fp32": med["bf16"] / med["fp32"],
                         "final_valid_ndcg@10": {p: by[p][0]["valid_ndcg@10"][-1] for p in by}}
    info = machine_info()
    doc = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "epochs": args.epochs,
           "rounds": args.rounds, "machine": info, "versions": versions(),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, "summary": summary, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2))
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in info["flags"].items()
                      if f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile"))
    lines = ["# bf16 autocast vs fp32: training the sequence models", "",
             f"{doc['date']} · ML-100K warm split, d=64, max_len 50, batch 128, full softmax, {args.epochs} epochs × "
             f"{args.rounds} rounds per precision (alternating order), 1 torch thread · {info['cpu_model']}, "
             f"{info['logical_cores']} cores; {flags} · torch {doc['versions'].get('torch')} · peak RSS "
             f"{doc['peak_rss_mb']} MB", "",
             "| model | fp32 CPU s / epoch | bf16 CPU s / epoch | bf16 ÷ fp32 | valid NDCG@10 after the epochs, fp32 | bf16 |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        m, v = s["median_cpu_s_per_epoch"], s["final_valid_ndcg@10"]
        lines.append(f"| {name} | {m['fp32']:.2f} | {m['bf16']:.2f} | {s['bf16_over_fp32']:.2f} | {v['fp32']:.4f} "
                     f"| {v['bf16']:.4f} |")
    lines += ["", "Medians over every epoch of every round (CPU seconds of the process, all threads). Other work on "
              "the machine slows both precisions alike within a round; the ratio is the figure to read."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
