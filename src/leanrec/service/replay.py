"""Replay held-out events through live experiments: an offline rehearsal of an online test.

Each simulated user walks through their held-out items in time order. At each one the user
asks every experiment for a list; if a list shows the held-out item the user clicks it (one
``click`` event, credited by the service to every experiment whose list showed it), else the
user finds it elsewhere (a ``view``). Either way the history grows by the same item, so no
arm changes what the others see next. This is the standard "a click when the held-out item
is shown" replay: it measures hit rate under each arm through the real serving path —
assignment, exposure logging, attribution and the report — not a re-implementation of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


def replay(svc, held_out: Iterable[tuple[str, list[str]]], experiments: list[str], k: int = 10,
           progress: Callable[[int], None] | None = None) -> dict:
    """Run the replay on a started :class:`~leanrec.service.core.RecService` whose
    ``experiments`` exist and run; returns ``{experiment id: report}``."""
    for n, (user, items) in enumerate(held_out, 1):
        for item in items:
            shown = set()
            for exp_id in experiments:
                shown.update(i["item_id"] for i in svc.recommend(user, k, experiment=exp_id)["items"])
            svc.add_events([{"user_id": user, "item_id": item, "ts": time.time(),
                             "kind": "click" if item in shown else "view", "value": None}])
        if progress is not None:
            progress(n)
    return {exp_id: svc.experiment_report(exp_id) for exp_id in experiments}


def strong_weak_experiments(svc, strong: str, weak: str) -> list[str]:
    """The four experiments of the replay checks: A/B and interleaving of ``weak`` (control)
    vs ``strong``, and of ``strong`` against itself (an A/A)."""
    def arms(a, b):
        return [{"name": "control", "model": a}, {"name": "treatment", "model": b}]

    specs = [("ab-strong", "ab", (weak, strong)), ("ab-same", "ab", (strong, strong)),
             ("il-strong", "interleave", (weak, strong)), ("il-same", "interleave", (strong, strong))]
    for exp_id, mode, pair in specs:
        svc.create_experiment({"id": exp_id, "mode": mode, "arms": arms(*pair)})
    return [s[0] for s in specs]
