"""The cost ladder, side by side in one run: ``python benchmarks/cost_ladder.py``.

Same as ``leanrec cost bench --out benchmarks/results/cost_ladder``: every rung of
:func:`leanrec.cost.config.default_ladder` in its own worker process, one after another,
on ML-100K (seed 42) for quality and on short item texts and ~150-word generated product
texts for throughput. Writes report.html (Pareto scatter, PNG and interactive),
report.json and report.md under benchmarks/results/cost_ladder/.
"""

from __future__ import annotations

import sys
from pathlib import Path

from leanrec.cli import app

if __name__ == "__main__":
    out = Path(__file__).parent / "results" / "cost_ladder"
    sys.exit(app(["cost", "bench", "--out", str(out), *sys.argv[1:]]))
