"""Quality against the strongest ID-only model, per data set: ``quality_<dataset>.{json,md}``.

    python benchmarks/quality.py --dataset ml-100k
    python benchmarks/quality.py --dataset ml-1m --models popular,ease,minilm,sasrec-id,sasrec

Runs the demo's job (:func:`leanrec.experiment.run_experiment`: the fixed protocols, every
grid tuned on validation, test once) with the ID-only SASRec (``sasrec-id``) as the
reference, and writes one table per protocol:

* test NDCG@10 and Recall@10 on all users and on the users whose test event is strictly
  later than their previous one (ties in time are ordered by item id, which a model with
  ID embeddings can learn; the strictly-later users show what does not ride on that);
* each model's NDCG@10 ratio to ``sasrec-id`` with its paired-bootstrap 95% interval, on all
  users and on the strictly-later ones;
* for the learned models, the training cost: CPU seconds to the epoch kept (validation
  best), all epochs, and the process's peak resident memory at the end of the run;
* the cold-item protocol's best model against the best text-only baseline (TF-IDF or
  MiniLM content) — the cold-start claim.

Numbers carry the protocol, seed, versions, CPU model and flags, threads and date. Other
work running on the machine slows the wall and CPU times, never the quality figures, which
are deterministic for the seed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_MODELS = "popular,ease,tfidf,minilm,hybrid,sasrec-id,sasrec,learned-hybrid"
TEXT_ONLY = ("tfidf", "minilm")


def _fmt(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _interval(vs: dict | None, subset: str) -> str:
    if not vs or subset not in vs or "ndcg@10" not in vs[subset]:
        return "–"
    r = vs[subset]["ndcg@10"]
    if r.get("ratio") is None:
        return "–"
    return f"{r['ratio']:.3f} [{r['ratio_ci'][0]:.3f}, {r['ratio_ci'][1]:.3f}]"


def _memory(mem: dict | None) -> str:
    """Process RSS peak while the model was tuned, fitted and tested, and its rise above the
    RSS when that began (``leanrec.core.memory.PeakMemory``, sampled every 50 ms)."""
    return "–" if not mem else f"{mem['peak_rss_mb']:,.0f} ({mem['rise_mb']:,.0f})"


def table(results: dict, protocol: str) -> list[str]:
    rows = ["| model | params | valid NDCG@10 | test NDCG@10 | test Recall@10 | strictly-later NDCG@10 (n) "
            "| ÷ sasrec-id, all [95% CI] | ÷ sasrec-id, strictly later | CPU s to best / all epochs "
            "| peak RSS MB (rise) |",
            "|---|---|---:|---:|---:|---:|---|---|---:|---:|"]
    for name, per in results["models"].items():
        run = per.get(protocol)
        if run is None:
            continue
        test, later = run["test"], run["test"].get("strictly_later", {})
        training = run.get("training") or {}
        cost = "–"
        if "cpu_seconds_to_best" in training:
            cost = f"{training['cpu_seconds_to_best']:.0f} / {training.get('train_cpu_seconds', 0):.0f}"
        params = ", ".join(f"{k}={v}" for k, v in (run.get("params") or {}).items()
                           if isinstance(v, (int, float, str, bool)) and k != "on_epoch") or "–"
        rows.append(f"| {name} | {params[:60]} | {_fmt(run['valid'].get('ndcg@10'))} | {_fmt(test.get('ndcg@10'))} "
                    f"| {_fmt(test.get('recall@10'))} | {_fmt(later.get('ndcg@10'))} ({later.get('n_users', 0)}) "
                    f"| {_interval(run.get('vs_reference'), 'all')} | {_interval(run.get('vs_reference'), 'strictly_later')} "
                    f"| {cost} | {_memory(run.get('memory'))} |")
    return rows


def cold_claim(results: dict) -> list[str]:
    """The best cold-protocol model against the best text-only baseline, on test NDCG@10."""
    cold = {n: r["cold"]["test"]["ndcg@10"] for n, r in results["models"].items() if "cold" in r}
    text = {n: v for n, v in cold.items() if n in TEXT_ONLY}
    if not cold or not text:
        return []
    best, best_text = max(cold, key=cold.get), max(text, key=text.get)
    ratio = cold[best] / cold[best_text] if cold[best_text] else float("nan")
    return [f"Cold items: best model **{best}** {cold[best]:.4f} test NDCG@10 against the best text-only "
            f"baseline **{best_text}** {cold[best_text]:.4f}: **{ratio:.2f}×** (target ≥ 1.3×)."]


def cpu_curve(results: dict, protocol: str = "warm", points: int = 8) -> list[str]:
    """Quality against training cost: each learned model's internal-validation NDCG@10 (the
    early-stopping signal, held-out last training events) after the epochs ending at about
    ``points`` evenly spaced CPU times, from its training history."""
    curves = {name: per[protocol]["training"]["history"] for name, per in results["models"].items()
              if protocol in per and (per[protocol].get("training") or {}).get("history")}
    if not curves:
        return []
    rows = [f"## Quality vs training CPU minutes ({protocol})", "",
            "Internal-validation NDCG@10 (each user's last training event, the early-stopping signal) after "
            "the epoch that ended at that CPU time; ★ = the epoch kept.", "",
            "| model | CPU min → NDCG@10 |", "|---|---|"]
    for name, hist in curves.items():
        done = [h for h in hist if h["epoch"] > 0]
        if not done:
            continue
        best = max(done, key=lambda h: h["valid_ndcg@10"])["epoch"]
        picks = sorted({done[round(i * (len(done) - 1) / max(1, points - 1))]["epoch"] for i in range(points)} | {best})
        cells = [f"{h['cpu_seconds'] / 60:.1f} → {h['valid_ndcg@10']:.4f}{' ★' if h['epoch'] == best else ''}"
                 for h in done if h["epoch"] in picks]
        rows.append(f"| {name} | " + " · ".join(cells) + " |")
    return rows + [""]


def report(doc: dict) -> str:
    results = doc["results"]
    m = doc["machine"]
    lines = [f"# Quality on {doc['dataset']}: leanrec's models against the ID-only SASRec",
             "",
             f"{doc['date']} · `{doc['command']}` · seed {results['seed']} · wall {doc['wall_s']:.0f} s · "
             f"peak RSS {doc['peak_rss_mb']} MB · {m['cpu_model']} ({m['cores']} cores; flags "
             f"{' '.join(m['flags'])}) · torch {doc['versions'].get('torch')} · numpy {doc['versions'].get('numpy')}",
             "",
             "Protocols: DESIGN.md §4 (warm = per-user temporal leave-one-out, ties ordered by item id; cold = "
             "20% of items held out). Strictly later = the test event's timestamp is after the user's previous "
             "event. Ratios: paired bootstrap over users (2,000 resamples), reference `sasrec-id`. CPU seconds "
             "count every thread of the process and are slowed by other work on the machine; quality figures are "
             "deterministic for the seed.", ""]
    for protocol in results["splits"]:
        lines += [f"## {protocol}", ""] + table(results, protocol) + [""]
    lines += cpu_curve(results)
    lines += cold_claim(results)
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--protocols", default="warm,cold")
    ap.add_argument("--out", type=Path, default=None, help="writes OUT.json and OUT.md "
                    "(default benchmarks/results/quality_<dataset>)")
    ap.add_argument("--work", type=Path, default=None, help="folder for results.json and recs (default: temporary)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                    help="override an ExperimentConfig field, e.g. --set 'sasrec_grid=[{\"item_ids\": true}]' "
                         "(recorded in the results' config)")
    args = ap.parse_args()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from leanrec.cost.hardware import machine_info
    from leanrec.data import load
    from leanrec.experiment import plan_steps, run_experiment, versions
    from leanrec.models.presets import ExperimentConfig, expand_models

    out = args.out or RESULTS / f"quality_{args.dataset.replace('-', '')}"
    overrides = {}
    for item in args.set:
        field, sep, value = item.partition("=")
        if not sep or field not in ExperimentConfig.__dataclass_fields__:
            raise SystemExit(f"--set {item!r}: expected FIELD=JSON with FIELD an ExperimentConfig field")
        parsed = json.loads(value)
        overrides[field] = tuple(parsed) if isinstance(parsed, list) else parsed
    cfg = ExperimentConfig(models=expand_models(m.strip() for m in args.models.split(",") if m.strip()),
                           protocols=tuple(p.strip() for p in args.protocols.split(",") if p.strip()),
                           reference="sasrec-id", **overrides)
    ds = load(args.dataset)
    work = args.work or Path(tempfile.mkdtemp(prefix="leanrec-quality-"))
    t0 = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("tuning and testing", total=plan_steps(cfg))
        results = run_experiment(ds, work, cfg, on_step=lambda label: bar.update(task, advance=1, description=label),
                                 on_status=lambda line: bar.update(task, description=line))
    info = machine_info()
    doc = {"command": " ".join(["python", "benchmarks/quality.py", *sys.argv[1:]]),
           "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "dataset": args.dataset,
           "wall_s": round(time.perf_counter() - t0, 1),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
           "machine": {"cpu_model": info["cpu_model"], "cores": info["logical_cores"],
                       "flags": [f for f, on in info["flags"].items() if on]},
           "versions": versions(), "results": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=str))
    out.with_suffix(".md").write_text(report(doc))
    print(report(doc))


if __name__ == "__main__":
    main()
