"""The README's headline tables, generated from the results files (never typed by hand).

    python benchmarks/headline.py            # print the tables
    python benchmarks/headline.py --readme   # rewrite them in README.md between the markers

Quality: ``quality_ml100k.json`` (and ``quality_ml1m.json`` when present) — test NDCG@10 of
the core and learned models, all users and the strictly-later subset, each against the
ID-only SASRec with its paired-bootstrap interval. Cost: ``cost_ladder/report.json`` — the
encoder's throughput, size, latency and quality along the ladder. Each table names its
machine, CPU flags and date. ``tests/test_docs.py`` fails when the README's copy is stale.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE.parent / "README.md"
START, END = "<!-- headline:start (python benchmarks/headline.py --readme) -->", "<!-- headline:end -->"
QUALITY_MODELS = ("popular", "ease", "hybrid", "sasrec-id", "sasrec", "learned-hybrid")
LADDER_ROWS = ("torch-fp32", "onnx-int8", "onnx-int8-L3-distilled", "static-L3-distilled", "tfidf")


def _flags(flags) -> str:
    on = [f for f, v in flags.items() if v] if isinstance(flags, dict) else list(flags)
    return ", ".join(on) or "none of avx512/amx"


def _ratio(run: dict) -> str:
    r = ((run.get("vs_reference") or {}).get("all") or {}).get("ndcg@10") or {}
    if r.get("ratio") is None:
        return "–"
    return f"{r['ratio']:.2f} [{r['ratio_ci'][0]:.2f}, {r['ratio_ci'][1]:.2f}]"


def quality_table(name: str) -> list[str]:
    path = RESULTS / f"quality_{name}.json"
    if not path.is_file():
        return []
    doc = json.loads(path.read_text())
    models, m = doc["results"]["models"], doc["machine"]
    rows = [f"**{doc['dataset']}**, warm users (temporal leave-one-out, full ranking; "
            f"[protocol](docs/evaluation.md)) — {m['cpu_model']}, {m['cores']} cores ({_flags(m['flags'])}), "
            f"{doc['date'][:10]}, [`{path.relative_to(HERE.parent)}`]({path.relative_to(HERE.parent)}):", "",
            "| model | test NDCG@10 | strictly-later NDCG@10 (users) | ÷ ID-only SASRec [95% CI] | training CPU s |",
            "|---|---:|---:|---|---:|"]
    for name_ in QUALITY_MODELS:
        run = (models.get(name_) or {}).get("warm")
        if not run:
            continue
        later = run["test"].get("strictly_later", {})
        cpu = (run.get("training") or {}).get("cpu_seconds_to_best")
        rows.append(f"| {name_} | {run['test']['ndcg@10']:.4f} | {later.get('ndcg@10', float('nan')):.4f} "
                    f"({later.get('n_users', 0)}) | {_ratio(run) if name_ != 'sasrec-id' else 'reference'} "
                    f"| {'–' if cpu is None else f'{cpu:.0f}'} |")
    return rows + [""]


def cost_table() -> list[str]:
    path = RESULTS / "cost_ladder" / "report.json"
    doc = json.loads(path.read_text())
    m, summary = doc["machine"], {r["name"]: r for r in doc["summary"]}
    try:
        date = subprocess.run(["git", "log", "-1", "--format=%cs", "--", str(path)], cwd=HERE, text=True,
                              capture_output=True, timeout=10).stdout.strip()
    except OSError:
        date = ""
    rows = [f"**Encoding cost** on ML-100K titles, 1 thread — {m['cpu_model']}, {m['logical_cores']} cores "
            f"({_flags(m['flags'])}){', ' + date if date else ''}, "
            f"[`benchmarks/results/cost_ladder/report.json`](benchmarks/results/cost_ladder/report.json):", "",
            "| encoder | items/s | × fp32 | p50 ms / text | model MB | peak RSS MB | cold NDCG@10 ÷ fp32 [95% CI] |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for name in LADDER_ROWS:
        r = summary.get(name)
        if not r or r.get("error"):
            continue
        ci = r["cold_vs_ref_ci"]
        rows.append(f"| {name} | {r['items_per_s_short']:,.0f} | {r['speedup_short']:.1f} | {r['latency_p50_ms']:.2f} "
                    f"| {r['model_mb']:.1f} | {r['peak_rss_mb']:.0f} | {r['cold_vs_ref']:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] |")
    return rows + [""]


def render() -> str:
    return "\n".join(quality_table("ml100k") + quality_table("ml1m") + cost_table()).strip() + "\n"


def write_readme(path: Path = README) -> None:
    text = path.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise SystemExit(f"{path}: markers {START!r} … {END!r} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{render()}{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if "--readme" in sys.argv[1:]:
        write_readme()
    else:
        print(render())
