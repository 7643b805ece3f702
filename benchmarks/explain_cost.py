"""What an explanation costs: top-10 with and without explanations, per model, on ML-100K.

For 50 users (seed 42) of MovieLens-100K, fitted on all events: the time of
``recommend(user, 10)`` and of ``explain_items`` on those 10 items, medians and p90 side by
side in one run, plus the largest |Σ parts − score| seen (the exactness check). One thread
(``core.threads.thread_budget(1)``). Writes ``benchmarks/results/explain_cost.{json,md}``.

    python benchmarks/explain_cost.py
"""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

OUT = Path(__file__).parent / "results"
USERS, K, SEED = 50, 10, 42


def main() -> None:
    from leanrec.core.threads import thread_budget
    from leanrec.data.sources.movielens import load_ml100k
    from leanrec.explain import explain_items
    from leanrec.models import EASE, ContentRecommender, Hybrid, MostPopular

    t_start = time.perf_counter()
    ds = load_ml100k()
    models = {
        "popular": MostPopular(),
        "ease": EASE(lam=300.0),
        "minilm": ContentRecommender("minilm", half_life=8),
        "hybrid": Hybrid(ContentRecommender("minilm", half_life=4), EASE(lam=300.0), weight=0.5),
    }
    users = np.random.default_rng(SEED).choice(ds.events.frame["user_id"].unique(), USERS, replace=False)
    rows = []
    with thread_budget(1):
        for name, model in models.items():
            model.fit(ds)
            rec_ms, exp_ms, worst, exact = [], [], 0.0, True
            for user in users:
                t0 = time.perf_counter()
                recs = model.recommend(user, K)
                t1 = time.perf_counter()
                reasons = explain_items(model, user, [r.item_id for r in recs])
                t2 = time.perf_counter()
                rec_ms.append(1e3 * (t1 - t0))
                exp_ms.append(1e3 * (t2 - t1))
                worst = max(worst, max(abs(e.total - e.score) for e in reasons))
                exact &= all(e.exact for e in reasons)
            rows.append({"model": name, "method": reasons[0].method, "exact": exact,
                         "recommend_ms_p50": float(np.median(rec_ms)), "explain_ms_p50": float(np.median(exp_ms)),
                         "explain_ms_p90": float(np.percentile(exp_ms, 90)),
                         "ratio_p50": float(np.median(exp_ms) / np.median(rec_ms)), "max_abs_error": worst})
    result = {"protocol": f"ML-100K, all events; {USERS} users (seed {SEED}); top-{K} then explain_items on it",
              "threads": 1, "wall_s": round(time.perf_counter() - t_start, 1),
              "versions": {"python": platform.python_version(), "numpy": np.__version__,
                           "leanrec": metadata.version("leanrec"), "cpu": platform.processor() or platform.machine()},
              "rows": rows}
    OUT.mkdir(exist_ok=True)
    (OUT / "explain_cost.json").write_text(json.dumps(result, indent=2))
    lines = [f"# Explanation cost — {result['protocol']}", "",
             f"threads 1 · wall {result['wall_s']} s · python {result['versions']['python']} · "
             f"numpy {result['versions']['numpy']}", "",
             "| model | split | exact | recommend p50 ms | explain 10 items p50 ms | p90 ms | explain / recommend | max abs(Σ parts − score) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['method']} | {r['exact']} | {r['recommend_ms_p50']:.2f} | "
                     f"{r['explain_ms_p50']:.2f} | {r['explain_ms_p90']:.2f} | {r['ratio_p50']:.1f}× | "
                     f"{r['max_abs_error']:.1e} |")
    (OUT / "explain_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
