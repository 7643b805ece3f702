"""Online experiments, rehearsed: replay ML-100K's held-out events through the service.

Protocol: each user's last 5 events (in (timestamp, item id) order) are held out; EASE
(λ = 100, strong) and popularity (weak) are trained by the library on the rest and saved as
model folders; an in-process service (SQLite in a temporary folder; the catalogue encoded
with a 32-d word-hash encoder, since neither arm reads text) holds the catalogue and the
training events. Four experiments run side by side: A/B and team-draft interleaving of
popular (control) vs EASE, and of EASE vs itself (A/A). At each held-out event every user
asks each experiment for 10 items and clicks the held-out item if a list shows it
(:mod:`leanrec.service.replay`). Writes ``benchmarks/results/experiment_replay.{json,md}``.

    python benchmarks/experiment_replay.py
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "results"
HELD_OUT, K = 5, 10


class WordHashEncoder:
    """Bag of hashed words (32-d): the catalogue needs vectors, neither arm reads them."""

    model_id = "hash-bag-32"
    dim = 32

    def encode(self, texts, batch_size=None, progress=None):
        out = np.zeros((len(texts), self.dim), np.float32)
        for k, t in enumerate(texts):
            for w in t.lower().split():
                out[k, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def main() -> None:
    from rich.progress import Progress

    from leanrec.data.sources.movielens import load_ml100k
    from leanrec.data.split import _ordered
    from leanrec.models import EASE, MostPopular
    from leanrec.models.persist import save_model
    from leanrec.service import ServiceConfig
    from leanrec.service.core import RecService
    from leanrec.service.importer import import_dataset
    from leanrec.service.replay import replay, strong_weak_experiments

    t0 = time.perf_counter()
    ds = load_ml100k()
    ev = _ordered(ds)
    last = ev.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy() < HELD_OUT
    train = ds.with_events(ev.loc[~last, list(ds.events.frame.columns)])
    held = [(str(u), [str(i) for i in g["item_id"]]) for u, g in ev.loc[last].groupby("user_id", sort=False)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        strong = str(save_model(EASE(lam=100).fit(train), tmp / "ease", name="ease"))
        weak = str(save_model(MostPopular().fit(train), tmp / "popular", name="popular"))
        svc = RecService(ServiceConfig(db=f"sqlite:///{tmp / 'replay.db'}", data_dir=str(tmp / "data")),
                         encoder=WordHashEncoder()).start()
        try:
            import_dataset(svc, train)
            t1 = time.perf_counter()
            with Progress(transient=True) as bar:
                task = bar.add_task("replaying users", total=len(held))
                reports = replay(svc, held, strong_weak_experiments(svc, strong, weak), K,
                                 progress=lambda n: bar.update(task, completed=n))
            replay_s = time.perf_counter() - t1
        finally:
            svc.stop()
    result = {"protocol": f"ML-100K, last {HELD_OUT} events per user held out, k = {K}; EASE(λ=100) vs popular; "
                          "a click when a list shows the held-out item",
              "users": len(held), "replay_s": round(replay_s, 1), "wall_s": round(time.perf_counter() - t0, 1),
              "versions": {"python": platform.python_version(), "numpy": np.__version__,
                           "leanrec": metadata.version("leanrec"), "sqlalchemy": metadata.version("sqlalchemy")},
              "reports": reports}
    OUT.mkdir(exist_ok=True)
    (OUT / "experiment_replay.json").write_text(json.dumps(result, indent=2, default=str))
    lines = [f"# Experiment replay — {result['protocol']}", "",
             f"{result['users']} users · replay {result['replay_s']} s · wall {result['wall_s']} s · "
             f"python {result['versions']['python']} · SQLite", "",
             "| experiment | arm | users | exposures | CTR | 95% CI | diff vs control | p | SRM p |",
             "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for exp_id in ("ab-strong", "ab-same"):
        rep = reports[exp_id]
        cmp = rep["comparisons"][0]
        for arm in rep["arms"]:
            is_control = arm["name"] == cmp["control"]
            diff = "–" if is_control else (f"{cmp['diff']:+.3f} [{cmp['diff_ci95'][0]:+.3f}, "
                                           f"{cmp['diff_ci95'][1]:+.3f}]")
            p = "–" if is_control else f"{cmp['p_value']:.2g}"
            lines.append(f"| {exp_id} | {arm['name']} | {arm['users']} | {arm['exposures']} | {arm['ctr']:.3f} | "
                         f"[{arm['ctr_ci95'][0]:.3f}, {arm['ctr_ci95'][1]:.3f}] | {diff} | {p} | "
                         f"{rep['srm']['p_value']:.2f} |")
    lines += ["", "| interleaving | exposures | wins control | wins treatment | ties | preference | p |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for exp_id in ("il-strong", "il-same"):
        rep = reports[exp_id]
        lines.append(f"| {exp_id} | {rep['exposures']} | {rep['wins']['control']} | {rep['wins']['treatment']} | "
                     f"{rep['ties']} | {rep['preference']:+.3f} | {rep['p_value']:.2g} |")
    (OUT / "experiment_replay.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
