"""The planner on this machine's measurements: ``python benchmarks/plan_example.py``.

Builds a profile from two measured files — the cost ladder's ``static-L3-distilled`` row
(encoder throughput, latency and model bytes; `benchmarks/cost_ladder.py`) and the 100k-item
HNSW profile of `benchmarks/index_scale.py` (256-dim static vectors, the same width as that
encoder's) — and plans 10M items, 50M users, 2,000 QPS and 200k new items a day with the
packaged prices. Writes ``benchmarks/results/plan_example.json`` and prints the plan.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from leanrec.cli import app

RESULTS = Path(__file__).parent / "results"

if __name__ == "__main__":
    ladder = json.loads((RESULTS / "cost_ladder" / "report.json").read_text())
    row = next(r for r in ladder["rows"] if r["name"] == sys.argv[1:2][0]) if sys.argv[1:2] else \
        next(r for r in ladder["rows"] if r["name"] == "static-L3-distilled")
    index = json.loads((RESULTS / "index_scale.json").read_text())["small"]
    profile = {"describe": row["describe"], "config": row["config"], "encoder": row["encoder"],
               "index_scale": index, "sources": ["cost_ladder/report.json", "index_scale.json (small)"]}
    path = RESULTS / "plan_profile.json"
    path.write_text(json.dumps(profile, indent=1))
    app(["cost", "plan", "--items", "10M", "--users", "50M", "--qps", "2000", "--new-items-per-day", "200k",
         "--profile", str(path), "--out", str(RESULTS / "plan_example.json")])
